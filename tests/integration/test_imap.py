"""ImapSession against the real Dovecot from deploy/dovecot (tests/servers).

Every fact is checked against what the server says through a second connection or
through stdlib imaplib, not only "no exception".
"""

from __future__ import annotations

import datetime as dt
import imaplib
import random
import ssl
from collections.abc import Callable, Iterator

import pytest

from email_service.errors import HeaderInjectionError, RemoteAuthError, RemotePermanentError
from email_service.mail.imap.session import (
    FetchedMessage,
    ImapSession,
    decode_folder_name,
    encode_folder_name,
    search_string,
)
from tests.servers import DovecotServer, MailAccount

# Generous: only bounds a hang; loopback answers take milliseconds.
TIMEOUT = 15.0
UTC = dt.UTC

Connect = Callable[..., ImapSession]


@pytest.fixture
def connect(dovecot: DovecotServer, mail_user: MailAccount) -> Iterator[Connect]:
    """Open sessions for ``mail_user`` (STARTTLS by default); all closed afterwards."""
    opened: list[ImapSession] = []

    def open_session(security: str = "starttls", **overrides: object) -> ImapSession:
        ports = {
            "ssl": dovecot.imaps_port,
            "starttls": dovecot.imap_port,
            "none": dovecot.imap_port,
        }
        options: dict[str, object] = {
            "host": dovecot.host,
            "port": ports[security],
            "security": security,
            "username": mail_user.email,
            "password": mail_user.password,
            "timeout": TIMEOUT,
            "ca_file": str(dovecot.ca_file),
        }
        options.update(overrides)
        session = ImapSession(**options)  # type: ignore[arg-type]
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        session.logout()


def message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    return (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: "
        + subject.encode()
        + b"\r\nMessage-ID: <"
        + subject.encode()
        + b"@example.test>\r\n\r\n"
        + body
    )


def fill(session: ImapSession, count: int, folder: str = "INBOX") -> list[int]:
    uids = []
    for index in range(count):
        appended = session.append(folder, message(f"m{index}"))
        assert appended is not None
        uids.append(appended[1])
    return uids


# ---- connecting --------------------------------------------------------------------


@pytest.mark.parametrize("security", ["ssl", "starttls", "none"])
def test_connect_and_capabilities(connect: Connect, security: str) -> None:
    session = connect(security)
    assert {"IMAP4REV1", "CONDSTORE", "QRESYNC", "UIDPLUS", "MOVE"} <= session.capabilities
    assert "QRESYNC" in session.enabled
    assert "AUTH=PLAIN" not in session.capabilities  # post-login capabilities were re-read
    assert session.list_folders()
    tls = session._conn.sock
    assert isinstance(tls, ssl.SSLSocket) == (security != "none")
    if isinstance(tls, ssl.SSLSocket):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


def test_tls_verifies_the_name_not_the_address(connect: Connect) -> None:
    session = connect("ssl", host="localhost", connect_address="127.0.0.1")
    session.noop()
    with pytest.raises(RemotePermanentError, match="certificate"):
        connect("ssl", host="imap.wrong-name.test", connect_address="127.0.0.1")
    with pytest.raises(RemotePermanentError, match="certificate"):
        connect("starttls", host="imap.wrong-name.test", connect_address="127.0.0.1")


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_against_the_wrong_trust_store(connect: Connect, security: str) -> None:
    with pytest.raises(RemotePermanentError, match="certificate"):
        connect(security, ca_file=None)  # the system store does not know the test CA


@pytest.mark.parametrize("security", ["ssl", "starttls", "none"])
def test_wrong_password(connect: Connect, security: str) -> None:
    with pytest.raises(RemoteAuthError):
        connect(security, password="not-the-password")


# ---- folders -----------------------------------------------------------------------

NAMES = ["Entwürfe", "日本語/子", "a&b", 'Quote "x" \\ back', "Projects/2026 📬"]


def test_special_use_roles_and_non_ascii_names(connect: Connect) -> None:
    session = connect()
    for name in NAMES:
        session.create_folder(encode_folder_name(name))
    folders = {f.name: f for f in session.list_folders()}
    roles = {f.name: f.role for f in folders.values() if f.role}
    assert roles == {
        "INBOX": "inbox",
        "Drafts": "drafts",
        "Sent": "sent",
        "Trash": "trash",
        "Junk": "junk",
        "Archive": "archive",
    }
    for name in NAMES:
        folder = folders[name]
        assert folder.selectable
        assert folder.raw_name == encode_folder_name(name)
        assert decode_folder_name(folder.raw_name) == name
        assert folder.delimiter == "/"
        session.select_folder(folder.raw_name)  # the raw name works in commands as sent
    assert folders["日本語"].selectable is False  # the parent exists only as hierarchy


def test_list_status_equals_status(connect: Connect) -> None:
    session = connect()
    fill(session, 3)
    fill(session, 2, "Archive")
    session.select_folder("INBOX", readonly=False)
    session.store_flags([1], add={"\\Seen"})
    listed = session.list_folders(with_status=True)
    assert all(f.status is not None for f in listed if f.selectable)
    for folder in listed:
        if folder.selectable:
            assert folder.status == session.status(folder.raw_name), folder.name
    statuses = {f.name: f.status for f in listed}
    assert (statuses["INBOX"].messages, statuses["INBOX"].unseen) == (3, 2)  # type: ignore[union-attr]
    assert statuses["Archive"].uidnext == 3  # type: ignore[union-attr]
    assert all(f.status is None for f in session.list_folders(with_status=False))


def test_status_without_list_status_is_pipelined_per_folder(connect: Connect) -> None:
    session = connect()
    fill(session, 2, "Sent")
    expected = {f.raw_name: f.status for f in session.list_folders()}
    session._conn.capabilities -= {"LIST-STATUS"}  # the fallback path, on the real server
    fallback = {f.raw_name: f.status for f in session.list_folders()}
    assert fallback == expected
    assert fallback["Sent"].messages == 2  # type: ignore[union-attr]


# ---- fetching ----------------------------------------------------------------------


def test_streamed_fetch_exact_bytes(connect: Connect) -> None:
    session = connect()
    rng = random.Random(7)
    eight_bit = bytes(b for b in range(1, 256) if b not in (10, 13))
    big = b"".join(rng.randbytes(76).hex().encode() + b"\r\n" for _ in range(40_000))  # 6 MB
    bodies = [
        message(f"s{i}", rng.randbytes(rng.randint(0, 3000)).hex().encode()) for i in range(40)
    ]
    bodies[5] = message("eight-bit", eight_bit + b"\r\n" + "Grüße 日本語\r\n".encode())
    bodies[17] = message("big", big)
    when = dt.datetime(
        2024, 2, 29, 23, 59, 58, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
    )
    uids = [session.append("INBOX", body, flags=["$Label"], internaldate=when) for body in bodies]
    selected = session.select_folder("INBOX")
    assert selected.exists == len(bodies)
    by_uid = {appended[1]: body for appended, body in zip(uids, bodies, strict=True)}  # type: ignore[index]
    fetched = list(session.fetch_messages(sorted(by_uid), batch=7, pipeline=3))
    # each message once; pipelined commands may answer interleaved (a server may run them
    # concurrently), so the order across commands is the server's
    assert sorted(m.uid for m in fetched) == sorted(by_uid)
    for got in fetched:
        assert got.body == by_uid[got.uid]
        assert got.size == len(got.body)
        assert got.flags == frozenset({"$Label"})
        assert got.internaldate == when  # the instant; Maildir keeps no offset (mtime)
        assert got.internaldate.utcoffset() is not None
        assert got.modseq is not None
    headers = list(session.fetch_headers([fetched[17].uid]))
    assert headers[0].body == by_uid[fetched[17].uid].split(b"\r\n\r\n")[0] + b"\r\n\r\n"


def test_message_with_nul_goes_in_as_literal8(connect: Connect) -> None:
    session = connect()
    raw = message("nul", b"before\0after\r\n")
    appended = session.append("INBOX", raw)  # needs BINARY (RFC 3516)
    assert appended is not None
    session.select_folder("INBOX")
    [got] = session.fetch_messages([appended[1]])
    # RFC 3501 forbids NUL in literals: Dovecot sends it as 0x80 in BODY[].
    assert len(got.body) == len(raw) and got.body.replace(b"\x80", b"\0") == raw


def test_fetch_when_some_uids_were_expunged_meanwhile(connect: Connect) -> None:
    reader, writer = connect(), connect("ssl")
    uids = fill(reader, 12)
    reader.select_folder("INBOX")
    writer.select_folder("INBOX", readonly=False)
    gone = {uids[1], uids[2], uids[7]}
    writer.expunge(gone)
    wanted = [*uids, 4000]  # and one that never existed
    got = [m.uid for m in reader.fetch_messages(wanted, batch=4, pipeline=2)]
    assert got == [uid for uid in uids if uid not in gone]
    assert reader.exists == 12 - len(gone)


def test_abandoned_fetch_then_more_commands(connect: Connect) -> None:
    session = connect()
    uids = fill(session, 30)
    session.select_folder("INBOX")
    stream = session.fetch_messages(uids, batch=5, pipeline=3)
    assert next(stream).uid == uids[0]
    stream.close()
    assert session.search_uids() == uids
    assert [m.uid for m in session.fetch_messages(uids[-3:])] == uids[-3:]


def test_search(connect: Connect) -> None:
    session = connect()
    uids = fill(session, 6)
    session.select_folder("INBOX", readonly=False)
    session.store_flags(uids[:2], add={"\\Seen"})
    assert session.search_uids() == uids
    assert session.search_uids("UNSEEN") == uids[2:]
    assert session.search_uids(f"UID {uids[4]}:*") == uids[4:]
    by_id = f"HEADER Message-ID {search_string('<m3@example.test>')}"
    assert session.search_uids(by_id) == [uids[3]]
    session._conn.capabilities -= {"ESEARCH"}  # the plain SEARCH answer, same result
    assert session.search_uids("SEEN") == uids[:2]
    with pytest.raises(HeaderInjectionError):
        session.search_uids("ALL\r\nE99 LOGOUT")
    assert session.search_uids("NOT ALL") == []


# ---- changes since a point ---------------------------------------------------------


def test_condstore_flag_changes_since_a_modseq(connect: Connect) -> None:
    session, other = connect(), connect("ssl")
    uids = fill(session, 5)
    before = session.select_folder("INBOX")
    assert before.highestmodseq is not None
    other.select_folder("INBOX", readonly=False)
    other.store_flags([uids[1], uids[3]], add={"\\Flagged", "$Work"})
    other.store_flags([uids[3]], remove={"$Work"})
    changed = session.fetch_flags(changedsince=before.highestmodseq)
    assert set(changed) == {uids[1], uids[3]}
    assert changed[uids[1]].flags == frozenset({"\\Flagged", "$Work"})
    assert changed[uids[3]].flags == frozenset({"\\Flagged"})
    assert all(c.modseq is not None and c.modseq > before.highestmodseq for c in changed.values())
    everything = session.fetch_flags("1:*")
    assert set(everything) == set(uids)
    assert session.fetch_flags(uids[:2]).keys() == set(uids[:2])


def test_qresync_select_reports_vanished_and_changed(connect: Connect) -> None:
    first = connect()
    uids = fill(first, 8)
    state = first.select_folder("INBOX")
    first.logout()
    other = connect("ssl")
    other.select_folder("INBOX", readonly=False)
    other.store_flags([uids[0], uids[5]], add={"\\Answered"})
    other.expunge([uids[2], uids[6]])
    new = other.append("INBOX", message("late"))
    assert new is not None
    again = connect()
    result = again.select_folder("INBOX", qresync=(state.uidvalidity, state.highestmodseq or 0))  # type: ignore[arg-type]
    assert result.vanished == [uids[2], uids[6]]
    assert {uid: c.flags for uid, c in result.changed.items()} == {
        uids[0]: frozenset({"\\Answered"}),
        uids[5]: frozenset({"\\Answered"}),
        new[1]: frozenset(),
    }
    assert (result.uidvalidity, result.uidnext, result.exists) == (state.uidvalidity, new[1] + 1, 7)
    assert result.highestmodseq > state.highestmodseq  # type: ignore[operator]
    stale = again.select_folder("INBOX", qresync=(state.uidvalidity + 1, 1))
    assert stale.vanished == [] and stale.changed == {}  # another UIDVALIDITY: plain select


# ---- changing ----------------------------------------------------------------------


def fetched_bodies(session: ImapSession, folder: str) -> dict[int, bytes]:
    session.select_folder(folder)
    found: list[FetchedMessage] = list(session.fetch_messages(session.search_uids()))
    return {m.uid: m.body for m in found}


@pytest.mark.parametrize("with_move", [True, False])
def test_move_maps_uids(connect: Connect, with_move: bool) -> None:
    session = connect()
    uids = fill(session, 5)
    originals = fetched_bodies(session, "INBOX")
    session.select_folder("INBOX", readonly=False)
    if not with_move:
        session._conn.capabilities -= {"MOVE"}  # COPY + STORE + UID EXPUNGE instead
    mapping = session.move([uids[1], uids[3]], "Archive")
    assert set(mapping) == {uids[1], uids[3]}
    archived = fetched_bodies(session, "Archive")
    assert {new: archived[new] for new in mapping.values()} == {
        mapping[old]: originals[old] for old in mapping
    }
    assert sorted(fetched_bodies(session, "INBOX")) == [uids[0], uids[2], uids[4]]


def test_expunge_only_the_given_uids(connect: Connect) -> None:
    session = connect()
    uids = fill(session, 4)
    session.select_folder("INBOX", readonly=False)
    session.store_flags([uids[0]], add={"\\Deleted"})  # someone else's pending delete
    session.expunge([uids[2]])
    assert session.search_uids() == [uids[0], uids[1], uids[3]]
    assert session.fetch_flags([uids[0]])[uids[0]].flags == frozenset({"\\Deleted"})


def test_append_returns_appenduid(
    connect: Connect, dovecot: DovecotServer, mail_user: MailAccount
) -> None:
    session = connect()
    status = session.status("Drafts")
    appended = session.append("Drafts", message("draft"), flags=["\\Draft", "\\Seen"])
    assert appended == (status.uidvalidity, status.uidnext)
    with imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=TIMEOUT) as plain:
        plain.login(mail_user.email, mail_user.password)
        plain.select("Drafts", readonly=True)
        typ, data = plain.uid("FETCH", str(appended[1]), "(FLAGS BODY.PEEK[])")
        assert typ == "OK" and data[0] is not None
        assert data[0][1] == message("draft")  # type: ignore[index]
        assert b"\\Draft" in data[0][0] and b"\\Seen" in data[0][0]  # type: ignore[index]


def test_store_flags_add_and_remove(connect: Connect) -> None:
    session = connect()
    uids = fill(session, 3)
    session.select_folder("INBOX", readonly=False)
    session.store_flags(uids, add={"\\Seen", "$Todo"})
    session.store_flags(uids[1:], remove={"$Todo"}, add={"\\Flagged"})
    flags = {uid: update.flags for uid, update in session.fetch_flags(uids).items()}
    assert flags == {
        uids[0]: frozenset({"\\Seen", "$Todo"}),
        uids[1]: frozenset({"\\Seen", "\\Flagged"}),
        uids[2]: frozenset({"\\Seen", "\\Flagged"}),
    }


def test_no_injection_through_names(connect: Connect) -> None:
    session = connect()
    with pytest.raises(HeaderInjectionError):
        session.select_folder("INBOX\r\nE99 DELETE Archive")
    with pytest.raises(HeaderInjectionError):
        session.append('Sent" \r\nE99 DELETE Archive', message("x"))
    assert "Archive" in {f.raw_name for f in session.list_folders(with_status=False)}


def test_new_mail_from_another_connection_is_noticed(connect: Connect) -> None:
    watcher, sender = connect(), connect("ssl")
    fill(watcher, 2)
    watcher.select_folder("INBOX")
    fill(sender, 3)
    watcher.noop()
    assert watcher.exists == 5
