"""ImapSession against a scripted peer: timeouts, cuts, refusals, interleaved responses.

The real server is exercised in tests/integration/test_imap.py; these are the seams it
cannot reach.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable

import pytest

from email_service.errors import (
    HeaderInjectionError,
    RemoteAuthError,
    RemotePermanentError,
    RemoteTemporaryError,
)
from email_service.mail.imap.session import ImapProtocolError, ImapSession
from tests.unit.mail.imap_fake import PASSWORD, USER, FakeServer, Peer, Script, fake_server

__all__ = ["fake_server"]  # the fixture, imported to be found

Start = Callable[[Script | None], FakeServer]
# Short, since the tarpit tests wait for it; the bound asserted is generous.
TIMEOUT = 0.5
TIMEOUT_BOUND = 10.0


def connect(server: FakeServer, security: str = "none") -> ImapSession:
    return ImapSession("127.0.0.1", server.port, security, USER, PASSWORD, timeout=TIMEOUT)


def fetch_response(uid: int, body: bytes, seq: int = 1) -> bytes:
    head = b'* %d FETCH (UID %d FLAGS (\\Seen) INTERNALDATE "01-Feb-2026 10:00:00 +0100" ' % (
        seq,
        uid,
    )
    return head + b"RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n" % (len(body), len(body), body)


# ---- timeouts ----------------------------------------------------------------------


def test_tarpit_that_never_accepts(fake_server: Start) -> None:
    server = fake_server(None)
    started = time.monotonic()
    with pytest.raises(RemoteTemporaryError, match="timed out"):
        connect(server)
    assert time.monotonic() - started < TIMEOUT_BOUND


def test_server_that_stops_answering_mid_session(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        peer.command()  # the SELECT, never answered
        peer.until_closed()

    session = connect(fake_server(script))
    started = time.monotonic()
    with pytest.raises(RemoteTemporaryError, match="timed out"):
        session.select_folder("INBOX")
    assert time.monotonic() - started < TIMEOUT_BOUND
    with pytest.raises(RemoteTemporaryError, match="closed"):
        session.noop()  # broken connections refuse at once instead of waiting again


# ---- refusals before credentials leave ---------------------------------------------


def test_bye_greeting_is_temporary(fake_server: Start) -> None:
    server = fake_server(lambda peer: peer.send(b"* BYE too many connections\r\n"))
    with pytest.raises(RemoteTemporaryError, match="too many connections"):
        connect(server)


def test_starttls_not_offered_means_no_login(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
        peer.until_closed()

    server = fake_server(script)
    with pytest.raises(RemotePermanentError, match="STARTTLS"):
        connect(server, "starttls")
    server.close()
    assert server.peer is not None and server.peer.lines == []


def test_bytes_injected_after_starttls_are_refused(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n")
        tag, rest = peer.command()
        assert rest == b"STARTTLS"
        peer.send(tag + b" OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n")
        peer.until_closed()

    with pytest.raises(ImapProtocolError, match="STARTTLS"):
        connect(fake_server(script), "starttls")


def test_logindisabled_keeps_the_password(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.send(b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n")
        peer.until_closed()

    server = fake_server(script)
    with pytest.raises(RemotePermanentError, match="refuses"):
        connect(server)
    server.close()
    assert server.peer is not None
    assert not any(PASSWORD.encode() in line for line in server.peer.lines)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"NO [AUTHENTICATIONFAILED] Authentication failed.", RemoteAuthError),
        (b"NO Login failed", RemoteAuthError),
        (b"NO [UNAVAILABLE] Backend down", RemoteTemporaryError),
        (b"BAD Syntax", RemotePermanentError),
    ],
)
def test_login_answers(fake_server: Start, answer: bytes, error: type[Exception]) -> None:
    def script(peer: Peer) -> None:
        peer.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n")
        tag, rest = peer.command()
        assert base64.b64decode(rest.split()[-1]) == f"\0{USER}\0{PASSWORD}".encode()
        peer.send(tag + b" " + answer + b"\r\n")
        peer.until_closed()

    with pytest.raises(error) as caught:
        connect(fake_server(script))
    assert type(caught.value) is error


def test_login_with_synchronizing_literal(fake_server: Start) -> None:
    password = 'pässwörd "quoted"'
    seen: dict[str, bytes] = {}

    def script(peer: Peer) -> None:
        peer.send(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")  # no AUTH=PLAIN, no LITERAL+
        line = peer.line()
        assert line.endswith(b"{%d}" % len(password.encode())), line
        peer.send(b"+ go on\r\n")
        seen["password"] = peer.raw(len(password.encode()))
        tag = line.split()[0]
        assert peer.line() == b""
        peer.send(tag + b" OK [CAPABILITY IMAP4rev1] in\r\n")
        peer.until_closed()

    server = fake_server(script)
    with ImapSession("127.0.0.1", server.port, "none", USER, password, timeout=TIMEOUT):
        pass
    server.close()
    assert seen["password"] == password.encode()
    assert server.peer is not None and server.peer.lines[0].startswith(b'E1 LOGIN "user@')


def test_crlf_in_credentials_is_refused_before_sending(fake_server: Start) -> None:
    server = fake_server(
        lambda peer: (peer.send(b"* OK [CAPABILITY IMAP4rev1] hi\r\n"), peer.until_closed())
    )
    with pytest.raises(HeaderInjectionError):
        ImapSession("127.0.0.1", server.port, "none", USER, "x\r\nE9 DELETE INBOX", timeout=TIMEOUT)
    server.close()
    assert server.peer is not None and server.peer.lines == []


# ---- streamed FETCH ----------------------------------------------------------------


def test_unsolicited_responses_between_fetch_answers(fake_server: Start) -> None:
    first, second = b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n" + b"x" * 100_000 + b"\r\n"

    def script(peer: Peer) -> None:
        peer.login()
        tag, rest = peer.command()
        assert rest.startswith(b"UID FETCH 1:2,4 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        answer = (
            b"* 7 EXISTS\r\n* OK [ALERT] Maintenance at noon\r\n"
            + fetch_response(1, first)
            + b"* 2 EXPUNGE\r\n* 3 FETCH (UID 9 FLAGS (\\Deleted))\r\n* VANISHED 20:21\r\n"
            + fetch_response(4, second, seq=2)
            + tag
            + b" OK Fetch completed.\r\n"
        )
        for offset in range(0, len(answer), 4099):  # in pieces, across literal boundaries
            peer.send(answer[offset : offset + 4099])
        peer.until_closed()

    with connect(fake_server(script)) as session:
        messages = list(session.fetch_messages([4, 1, 2]))
        assert [(m.uid, m.body, m.size) for m in messages] == [
            (1, first, len(first)),
            (4, second, len(second)),
        ]
        assert messages[0].flags == frozenset({"\\Seen"})
        assert messages[0].internaldate.isoformat() == "2026-02-01T10:00:00+01:00"
        assert session.alerts == ["Maintenance at noon"]
        assert session.exists == 7 - 1 - 2


def test_fetch_commands_are_pipelined(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        commands = [peer.command(), peer.command()]  # both arrive before any answer
        for index, (tag, _rest) in enumerate(commands):
            peer.send(fetch_response(index + 1, b"m%d" % index) + tag + b" OK done\r\n")
        tag, rest = peer.command()
        assert rest.startswith(b"UID FETCH 3 ")
        peer.send(fetch_response(3, b"m2") + tag + b" OK done\r\n")
        peer.until_closed()

    with connect(fake_server(script)) as session:
        got = [m.body for m in session.fetch_messages([1, 2, 3], batch=1, pipeline=2)]
        assert got == [b"m0", b"m1", b"m2"]


def test_abandoned_stream_leaves_the_connection_in_step(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        for uid in (1, 2):
            tag, _ = peer.command()
            peer.send(fetch_response(uid, b"body %d" % uid) + tag + b" OK done\r\n")
        tag, rest = peer.command()
        assert rest == b"NOOP"
        peer.send(b"* 3 EXISTS\r\n" + tag + b" OK NOOP done\r\n")
        peer.until_closed()

    with connect(fake_server(script)) as session:
        for _message in session.fetch_messages([1, 2], batch=1, pipeline=2):
            break  # the second command is still in flight
        session.noop()
        assert session.exists == 3


def test_expunged_meanwhile_is_benign_but_bad_is_not(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        tag, _ = peer.command()
        peer.send(fetch_response(1, b"kept") + tag + b" NO [EXPUNGEISSUED] Some gone\r\n")
        tag, _ = peer.command()
        peer.send(tag + b" BAD Error in IMAP command\r\n")
        peer.until_closed()

    with connect(fake_server(script)) as session:
        assert [m.uid for m in session.fetch_messages([1, 2])] == [1]
        with pytest.raises(RemotePermanentError, match="BAD"):
            list(session.fetch_messages([1]))


def test_cut_in_the_middle_of_a_literal(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        peer.command()
        peer.send(fetch_response(1, b"complete") + b"* 2 FETCH (UID 2 BODY[] {1000}\r\nonly a part")
        peer.conn.shutdown(socket.SHUT_RDWR)

    session = connect(fake_server(script))
    received = []
    with pytest.raises(RemoteTemporaryError, match="closed"):
        for message in session.fetch_messages([1, 2]):
            received.append(message.uid)
    assert received == [1]
    with pytest.raises(RemoteTemporaryError):
        session.noop()


def test_bye_then_close_names_the_reason(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        peer.command()
        peer.send(b"* BYE Server shutting down\r\n")
        peer.conn.shutdown(socket.SHUT_RDWR)

    session = connect(fake_server(script))
    with pytest.raises(RemoteTemporaryError, match="shutting down"):
        session.noop()


def test_garbage_is_a_protocol_error(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        tag, _ = peer.command()
        peer.send(b"* 1 FETCH (UID 1 FLAGS (\\Seen)\r\n" + tag + b" OK\r\n")
        peer.until_closed()

    session = connect(fake_server(script))
    with pytest.raises(ImapProtocolError):
        session.fetch_flags("1:*")


def test_preauth_on_a_starttls_connection_is_refused(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.send(b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome, whoever you are\r\n")
        peer.until_closed()

    with pytest.raises(RemotePermanentError, match="pre-authenticated"):
        connect(fake_server(script), "starttls")


def test_literal_refused_instead_of_continued(fake_server: Start) -> None:
    def script(peer: Peer) -> None:
        peer.login()
        line = peer.line()
        assert line.startswith(b'E2 APPEND "Nowhere" () {'), line
        peer.send(b"E2 NO [TRYCREATE] Mailbox doesn't exist\r\n")  # no "+": literal never sent
        tag, rest = peer.command()
        assert (tag, rest) == (b"E3", b"NOOP")
        peer.send(b"E3 OK NOOP done\r\n")
        peer.until_closed()

    with connect(fake_server(script)) as session:
        with pytest.raises(RemotePermanentError, match="Mailbox doesn") as caught:
            session.append("Nowhere", b"Subject: x\r\n\r\nbody\r\n")
        assert caught.value.details["response_code"] == "TRYCREATE"
        session.noop()  # still in step
