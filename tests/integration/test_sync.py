"""The sync engine against the real Dovecot, into SQLite and PostgreSQL.

Counts are compared with what the server reports (STATUS), not just "no exception".
"""

from __future__ import annotations

import re
import socket
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from email_service.errors import RemoteAuthError
from email_service.mail.imap.session import FetchedMessage
from email_service.mail.mime.parse import Limits
from email_service.services import accounts, gateways
from email_service.services.accounts import AccountFields
from email_service.services.sync import ingest, ingest_pool
from email_service.services.sync import state as sync_state
from email_service.services.sync.run import run_sync
from email_service.store.models import Attachment, Folder, Message, SyncState
from tests.conftest import TENANT_A
from tests.support.accounts import register
from tests.support.mailgen import (
    append,
    fetch_raw,
    imap_login,
    make_message,
    recreate_folder,
    status,
)

FOLDERS = {"INBOX": 12, "Sent": 4, "Archive": 3, "Entw&APw-rfe": 2}  # "Entwürfe" in mUTF-7


@pytest.fixture
def mailbox_user(dovecot: Any, mail_user: Any) -> Any:
    """A user whose mailbox has messages in several folders, some with attachments."""
    with imap_login(dovecot, mail_user) as client:
        for folder in FOLDERS:
            if folder != "INBOX":
                client.create(f'"{folder}"')
        n = 0
        for folder, count in FOLDERS.items():
            for _ in range(count):
                raw = make_message(n, attachment=n % 4 == 0, html=n % 3 == 0)
                append(client, folder, raw, "\\Seen" if n % 2 else "")
                n += 1
    return mail_user


def _account(runtime: Any, dovecot: Any, user: Any, **extra: Any) -> uuid.UUID:
    return register(runtime, TENANT_A, dovecot, user, **extra)


def _sync(runtime: Any, account_id: uuid.UUID) -> Any:
    return run_sync(runtime, TENANT_A, account_id, owner=uuid.uuid4().hex)


def _local_counts(runtime: Any, account_id: uuid.UUID) -> dict[str, int]:
    with runtime.db.session() as session:
        rows = session.execute(
            select(Folder.raw_name, func.count(Message.id))
            .outerjoin(Message, Message.folder_id == Folder.id)
            .where(Folder.account_id == account_id)
            .group_by(Folder.raw_name)
        ).all()
    return dict(rows)


def _server_counts(dovecot: Any, user: Any) -> dict[str, int]:
    with imap_login(dovecot, user) as client:
        return {f: status(client, f)["MESSAGES"] for f in _server_folders(client)}


def _hide_capabilities(monkeypatch: pytest.MonkeyPatch, hidden: set[str]) -> None:
    """The server's capabilities as the engine sees them, without ``hidden``."""
    from email_service.mail.imap.session import ImapSession

    real = ImapSession.capabilities
    monkeypatch.setattr(
        ImapSession, "capabilities", property(lambda self: real.fget(self) - hidden)
    )  # type: ignore[attr-defined]


def _server_folders(client: Any) -> list[str]:
    typ, data = client.list()
    assert typ == "OK"
    return [line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in data]


def test_first_sync_matches_the_server(runtime: Any, dovecot: Any, mailbox_user: Any) -> None:
    account_id = _account(runtime, dovecot, mailbox_user)
    report = _sync(runtime, account_id)
    server = _server_counts(dovecot, mailbox_user)
    assert _local_counts(runtime, account_id) == server
    assert report.new_messages == sum(FOLDERS.values()) == sum(server.values())
    with runtime.db.session() as session:
        folders = {f.raw_name: f for f in session.scalars(select(Folder))}
        assert folders["Entw&APw-rfe"].name == "Entwürfe"
        assert folders["INBOX"].role == "inbox"
        assert folders["Sent"].role == "sent"
        inbox = folders["INBOX"]
        assert inbox.message_count == 12 and inbox.unread_count == 6
        first = session.scalars(
            select(Message).where(Message.folder_id == inbox.id).order_by(Message.uid)
        ).first()
        assert first is not None
        assert first.subject == "Quarterly report #0"
        assert first.from_email == "sender0@example.org" and first.from_name == "Sender Ünï 0"
        assert first.has_attachments and not first.seen
        assert session.scalar(select(func.count(Attachment.id))) == 6  # n % 4 == 0 of 21
        names = set(session.scalars(select(Attachment.filename)))
        assert "rapport-é-0.pdf" in names
        blob = gateways.blob_store(runtime, TENANT_A).get(first.blob_sha256)
    with imap_login(dovecot, mailbox_user) as client:
        assert blob == fetch_raw(client, "INBOX", first.uid)
    with runtime.db.session() as session:
        state = session.get_one(SyncState, account_id)
        assert state.state == "ok" and state.lock_owner is None
        assert state.progress["folders"]["INBOX"] == {"done": 12, "total": 12}


def test_incremental_changes_are_picked_up(runtime: Any, dovecot: Any, mailbox_user: Any) -> None:
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    with imap_login(dovecot, mailbox_user) as client:
        client.select('"INBOX"')
        client.uid("STORE", "1", "+FLAGS", "(\\Flagged \\Seen)")
        client.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
        client.expunge()
        client.uid("MOVE", "3", '"Archive"')
        new_uid = append(client, "INBOX", make_message(500, attachment=True))
    report = _sync(runtime, account_id)
    assert _local_counts(runtime, account_id) == _server_counts(dovecot, mailbox_user)
    assert report.new_messages == 2  # the appended one, and the moved one in Archive
    assert report.deleted == 2  # the expunged one, and the moved one gone from INBOX
    assert report.flag_updates >= 1
    with runtime.db.session() as session:
        inbox = session.scalars(select(Folder).where(Folder.raw_name == "INBOX")).one()
        flagged = session.scalars(
            select(Message).where(Message.folder_id == inbox.id, Message.uid == 1)
        ).one()
        assert flagged.flagged and flagged.seen and "\\Flagged" in flagged.flags
        assert session.scalars(
            select(Message).where(Message.folder_id == inbox.id, Message.uid == new_uid)
        ).one()


def test_no_change_resync_fetches_nothing(runtime: Any, dovecot: Any, mailbox_user: Any) -> None:
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    before = _local_counts(runtime, account_id)
    report = _sync(runtime, account_id)
    assert (report.new_messages, report.deleted, report.flag_updates, report.bytes) == (0, 0, 0, 0)
    assert _local_counts(runtime, account_id) == before


def test_uidvalidity_change_remaps_without_duplicates(
    runtime: Any, dovecot: Any, mailbox_user: Any
) -> None:
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    with runtime.db.session() as session:
        archive = session.scalars(select(Folder).where(Folder.raw_name == "Archive")).one()
        ids_before = set(session.scalars(select(Message.id).where(Message.folder_id == archive.id)))
        old_validity = archive.uidvalidity
    with imap_login(dovecot, mailbox_user) as client:
        recreate_folder(client, "Archive", back="1:2")  # 2 of 3 come back; 1 stays in Tmp
    report = _sync(runtime, account_id)
    assert _local_counts(runtime, account_id) == _server_counts(dovecot, mailbox_user)
    with runtime.db.session() as session:
        archive = session.scalars(select(Folder).where(Folder.raw_name == "Archive")).one()
        assert archive.uidvalidity != old_validity
        ids_after = set(session.scalars(select(Message.id).where(Message.folder_id == archive.id)))
        validities = set(
            session.scalars(select(Message.uidvalidity).where(Message.folder_id == archive.id))
        )
    assert len(ids_after) == 2 and ids_after < ids_before  # same rows, re-keyed
    assert validities == {archive.uidvalidity}
    assert report.remapped == 2


def _sync_with_a_wrong_password(runtime: Any, account_id: uuid.UUID) -> None:
    """Store a wrong password for the account; its next sync raises RemoteAuthError."""
    with runtime.db.session() as session:
        accounts.update_account(
            session,
            TENANT_A,
            account_id,
            AccountFields(password="wrong"),
            runtime.vault,
            runtime.hosts,
        )
    with pytest.raises(RemoteAuthError):
        _sync(runtime, account_id)


def test_wrong_password_is_auth_failed_without_retry(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account_id = _account(runtime, dovecot, mail_user)
    _sync_with_a_wrong_password(runtime, account_id)
    with runtime.db.session() as session:
        current = sync_state.status(session, TENANT_A, account_id)
        assert current.state == "auth_failed"
        assert current.last_error
        assert "wrong" not in current.last_error
        assert accounts.get_account(session, TENANT_A, account_id).status == "auth_failed"
    from email_service.services.sync import schedule as sync_jobs

    assert (account_id, TENANT_A) not in sync_jobs.due_accounts(runtime, limit=1000)


def test_second_run_while_locked_is_refused(runtime: Any, dovecot: Any, mail_user: Any) -> None:
    from email_service.errors import ConflictError

    account_id = _account(runtime, dovecot, mail_user)
    with runtime.db.session() as session:
        assert sync_state.start(session, TENANT_A, account_id, "someone-else")
    with pytest.raises(ConflictError):
        _sync(runtime, account_id)


@pytest.mark.parametrize("cut_after", [3_000, 40_000])
def test_connection_cut_mid_fetch_then_resume(
    runtime: Any, dovecot: Any, mailbox_user: Any, cut_after: int
) -> None:
    from email_service.errors import RemoteTemporaryError
    from tests.support.proxy import cutting_proxy

    with cutting_proxy(dovecot.host, dovecot.imap_port, cut_after) as proxy:
        account_id = _account(runtime, dovecot, mailbox_user)
        with runtime.db.session() as session:
            accounts.update_account(
                session,
                TENANT_A,
                account_id,
                AccountFields(imap_port=proxy.port),
                runtime.vault,
                runtime.hosts,
            )
        with pytest.raises(RemoteTemporaryError):
            _sync(runtime, account_id)
        assert proxy.cuts >= 1
    partial = sum(_local_counts(runtime, account_id).values())
    with runtime.db.session() as session:
        assert sync_state.status(session, TENANT_A, account_id).state == "error"
        accounts.update_account(
            session,
            TENANT_A,
            account_id,
            AccountFields(imap_port=dovecot.imap_port),
            runtime.vault,
            runtime.hosts,
        )
    _sync(runtime, account_id)
    local = _local_counts(runtime, account_id)
    assert local == _server_counts(dovecot, mailbox_user)
    assert partial <= sum(local.values())
    with runtime.db.session() as session:  # 0 duplicates: one row per (folder, uid)
        rows = session.execute(select(Message.folder_id, Message.uid)).all()
    assert len(rows) == len(set(rows)) == sum(FOLDERS.values())


@pytest.mark.parametrize("hidden", [{"QRESYNC"}, {"QRESYNC", "CONDSTORE"}])
def test_incremental_fallbacks_without_qresync_or_condstore(
    runtime: Any,
    dovecot: Any,
    mailbox_user: Any,
    monkeypatch: pytest.MonkeyPatch,
    hidden: set[str],
) -> None:
    """The engine's CONDSTORE-only and plain (UIDNEXT + flags) paths, on the real server."""
    _hide_capabilities(monkeypatch, hidden)
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    with imap_login(dovecot, mailbox_user) as client:
        client.select('"INBOX"')
        client.uid("STORE", "4", "+FLAGS", "(\\Answered)")
        client.uid("STORE", "5", "+FLAGS", "(\\Deleted)")
        client.expunge()
        append(client, "INBOX", make_message(900))
    report = _sync(runtime, account_id)
    assert _local_counts(runtime, account_id) == _server_counts(dovecot, mailbox_user)
    assert (report.new_messages, report.deleted) == (1, 1)
    assert report.flag_updates >= 1
    with runtime.db.session() as session:
        inbox = session.scalars(select(Folder).where(Folder.raw_name == "INBOX")).one()
        answered = session.scalars(
            select(Message).where(Message.folder_id == inbox.id, Message.uid == 4)
        ).one()
        assert answered.answered


@pytest.mark.parametrize("hidden", [set(), {"QRESYNC"}, {"QRESYNC", "CONDSTORE"}])
def test_many_flag_changes_are_applied_and_counted_exactly(
    runtime: Any,
    dovecot: Any,
    mailbox_user: Any,
    monkeypatch: pytest.MonkeyPatch,
    hidden: set[str],
) -> None:
    """Every changed message's flags equal the server's after the next sync, in batches.

    The count is exact: a message appended since the last sync is among QRESYNC's changes
    too, but it is new mail (stored with its flags), not a flag update.
    """
    _hide_capabilities(monkeypatch, hidden)
    monkeypatch.setattr(ingest, "FLAG_BATCH", 5)  # 12 changes: three executemany batches
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    with imap_login(dovecot, mailbox_user) as client:
        client.select('"INBOX"')
        client.uid("STORE", "1:*", "+FLAGS", "(\\Flagged $Todo)")
        client.uid("STORE", "1:6", "-FLAGS", "(\\Seen)")
        new_uid = append(client, "INBOX", make_message(901), "\\Seen")
        typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK"
    server = {
        int(re.findall(r"UID (\d+)", line.decode())[0]): set(
            re.findall(r"FLAGS \(([^)]*)\)", line.decode())[0].split()
        )
        - {"\\Recent"}  # this session's, not the message's
        for line in data
        if isinstance(line, bytes)
    }
    assert len(server) == FOLDERS["INBOX"] + 1
    report = _sync(runtime, account_id)
    assert (report.new_messages, report.flag_updates) == (1, FOLDERS["INBOX"])
    with runtime.db.session() as session:
        inbox = session.scalars(select(Folder).where(Folder.raw_name == "INBOX")).one()
        rows = session.scalars(select(Message).where(Message.folder_id == inbox.id)).all()
    local = {row.uid: set(row.flags) for row in rows}
    assert local == server
    # the boolean mirrors follow the flags lists
    assert {row.uid for row in rows if row.flagged} == set(server) - {new_uid}
    assert {row.uid for row in rows if row.seen} == {
        uid for uid, flags in server.items() if "\\Seen" in flags
    }
    assert {1, 2, 3, 4, 5, 6}.isdisjoint(row.uid for row in rows if row.seen)


def _prepare_again(
    runtime: Any, message: Message, uid: int, flags: frozenset[str], tsvector: bool = False
) -> ingest.Incoming:
    """A stored message's raw MIME through ``ingest.prepare`` again, in this process."""
    blobs = gateways.blob_store(runtime, TENANT_A)
    raw = blobs.get(message.blob_sha256)
    scope = {
        "tenant_id": TENANT_A,
        "account_id": message.account_id,
        "folder_id": message.folder_id,
        "uidvalidity": message.uidvalidity,
    }
    fetched = FetchedMessage(uid, flags, message.received_date, len(raw), None, raw)
    return ingest.prepare(fetched, scope, blobs, Limits(), tsvector=tsvector)


def _stored_and_inline(runtime: Any, message: Message, attachments: int) -> tuple[Any, Any]:
    """A stored message's parsed columns, and the same parsed again here from its raw MIME."""
    again = _prepare_again(runtime, message, message.uid, frozenset(message.flags))
    fields = (
        "subject",
        "from_email",
        "snippet",
        "body_text",
        "body_html",
        "has_attachments",
        "search_text",
    )
    stored = {f: getattr(message, f) for f in fields} | {"attachments": attachments}
    return stored, {f: again.row[f] for f in fields} | {"attachments": len(again.attachments)}


def test_parallel_parsing_stores_what_inline_parsing_stores(
    runtime: Any, dovecot: Any, mailbox_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large run parses in worker processes: same rows, same search documents, same blobs."""
    monkeypatch.setattr(ingest_pool, "PARALLEL_MIN_MESSAGES", 0)  # this mailbox counts as large
    monkeypatch.setattr(runtime.settings, "sync_parse_processes", 2)
    modes: list[bool] = []
    submit = ingest_pool.Preparer.submit

    def recording(self: ingest_pool.Preparer, *args: Any) -> Any:
        modes.append(self.parallel)
        return submit(self, *args)

    monkeypatch.setattr(ingest_pool.Preparer, "submit", recording)
    account_id = _account(runtime, dovecot, mailbox_user)
    report = _sync(runtime, account_id)
    assert modes and all(modes)  # every batch went to the pool
    assert _local_counts(runtime, account_id) == _server_counts(dovecot, mailbox_user)
    assert report.new_messages == sum(FOLDERS.values())
    with runtime.db.session() as session:
        counts = dict(
            session.execute(
                select(Attachment.message_id, func.count()).group_by(Attachment.message_id)
            ).all()
        )
        messages = session.scalars(
            select(Message)
            .options(undefer(Message.search_text))
            .where(Message.account_id == account_id)
        ).all()
        assert len(messages) == sum(FOLDERS.values())
        for message in messages:
            stored, inline = _stored_and_inline(runtime, message, counts.get(message.id, 0))
            assert stored == inline, message.subject
        assert sum(counts.values()) == 6


def test_rows_already_stored_are_skipped_by_a_later_batch(
    runtime: Any, dovecot: Any, mailbox_user: Any
) -> None:
    """A batch that races another run: the UID stored meanwhile is skipped, the new one stored."""
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    with runtime.db.session() as session:
        first = session.scalars(
            select(Message)
            .where(Message.account_id == account_id, Message.has_attachments)
            .order_by(Message.uid)
        ).first()
        assert first is not None
        postgres = runtime.db.dialect == "postgresql"
        batch = [
            _prepare_again(runtime, first, uid, frozenset(), tsvector=postgres)
            for uid in (first.uid, 999_999)
        ]
        before = session.scalar(select(func.count(Attachment.id)))
        assert ingest.insert_batch(session, batch) == 1
    with runtime.db.session() as session:
        uids = list(
            session.scalars(
                select(Message.uid).where(
                    Message.folder_id == first.folder_id, Message.uid.in_([first.uid, 999_999])
                )
            )
        )
        assert sorted(uids) == [first.uid, 999_999]
        assert (
            session.scalar(select(func.count(Attachment.id)))
            == before + len(batch[1].attachments)
            > before
        )
        assert session.get(Message, batch[0].row["id"]) is None


def test_new_mail_is_stored_newest_first_with_percent_progress(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    from email_service.services.sync.engine import FIRST_BATCH

    count = FIRST_BATCH + 30
    with imap_login(dovecot, mail_user) as client:
        for n in range(count):
            append(client, "INBOX", make_message(n), "")
        client.select("INBOX", readonly=True)
        server_uids = sorted(
            int(u)
            for u in client.uid("SEARCH", "ALL")[1][0].split()  # type: ignore[index]
        )
    account_id = _account(runtime, dovecot, mail_user)
    seen: list[tuple[set[int], float]] = []

    def progress(name: str, done: int, total: int, size: int) -> None:
        with runtime.db.session() as session:
            uids = set(session.scalars(select(Message.uid).where(Message.account_id == account_id)))
            seen.append((uids, sync_state.status(session, TENANT_A, account_id).percent))

    run_sync(runtime, TENANT_A, account_id, owner=uuid.uuid4().hex, progress=progress)
    first_uids, first_percent = seen[0]
    assert first_uids == set(server_uids[-FIRST_BATCH:])  # the newest, committed first
    assert 0 < first_percent < 100
    assert [p for _, p in seen] == sorted(p for _, p in seen)  # never goes back
    with runtime.db.session() as session:
        final = sync_state.status(session, TENANT_A, account_id)
    assert final.percent == 100.0
    assert final.folders["INBOX"] == {"done": count, "total": count, "percent": 100.0}


def test_a_little_new_mail_in_a_synced_folder_is_committed_at_once(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    """The newest-first early commit is for a folder with nothing stored yet: new mail of
    a synced folder, up to a batch, comes in one transaction with the checkpoint."""
    from email_service.services.sync.engine import FIRST_BATCH

    with imap_login(dovecot, mail_user) as client:
        append(client, "INBOX", make_message(0), "")
    account_id = _account(runtime, dovecot, mail_user)
    _sync(runtime, account_id)
    with imap_login(dovecot, mail_user) as client:
        for n in range(1, FIRST_BATCH + 31):
            append(client, "INBOX", make_message(n), "")
    committed: list[int] = []

    def progress(name: str, done: int, total: int, size: int) -> None:
        with runtime.db.session() as session:
            stored = select(func.count()).where(Message.account_id == account_id)
            committed.append(session.scalar(stored) or 0)

    run_sync(runtime, TENANT_A, account_id, owner=uuid.uuid4().hex, progress=progress)
    assert committed == [FIRST_BATCH + 31]


def test_quick_resync_reads_only_the_uids_it_was_told_about(
    runtime: Any, dovecot: Any, mail_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With QRESYNC an incremental sync asks our copy only for the UIDs the server named
    (changed and new), not every UID of the folder; the folder's progress still counts
    all of its stored messages."""
    with imap_login(dovecot, mail_user) as client:
        for n in range(40):
            append(client, "INBOX", make_message(n), "")
    account_id = _account(runtime, dovecot, mail_user)
    _sync(runtime, account_id)
    with imap_login(dovecot, mail_user) as client:
        client.select('"INBOX"')
        client.uid("STORE", "5", "+FLAGS", "(\\Flagged)")
        client.uid("STORE", "6", "+FLAGS", "(\\Deleted)")
        client.expunge()
        new_uid = append(client, "INBOX", make_message(900), "")
    asked: list[set[int] | None] = []
    stored_uids = ingest.stored_uids

    def spy(session: Any, folder_id: Any, uidvalidity: int, among: Any = None) -> set[int]:
        asked.append(None if among is None else set(among))
        return stored_uids(session, folder_id, uidvalidity, among=among)

    monkeypatch.setattr(ingest, "stored_uids", spy)
    report = _sync(runtime, account_id)
    assert (report.new_messages, report.deleted, report.flag_updates) == (1, 1, 1)
    assert asked == [{5, new_uid}]  # INBOX only: the other folders did not change
    assert _local_counts(runtime, account_id) == _server_counts(dovecot, mail_user)
    with runtime.db.session() as session:
        final = sync_state.status(session, TENANT_A, account_id)
    assert final.folders["INBOX"] == {"done": 40, "total": 40, "percent": 100.0}


def _listing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each LIST the engine sends."""
    from email_service.mail.imap.session import ImapSession

    listed: list[str] = []
    real = ImapSession.list_folders

    def spy(self: Any, with_status: bool = True) -> Any:
        listed.append("LIST")
        return real(self, with_status)

    monkeypatch.setattr(ImapSession, "list_folders", spy)
    return listed


@pytest.mark.parametrize("hidden", [set(), {"QRESYNC"}, {"QRESYNC", "CONDSTORE"}])
def test_a_pushed_folder_sync_goes_straight_to_its_folder(
    runtime: Any,
    dovecot: Any,
    mailbox_user: Any,
    monkeypatch: pytest.MonkeyPatch,
    hidden: set[str],
) -> None:
    """A push names a folder synced before: no LIST of every folder, that folder's changes
    (new, expunged, flags) stored, the other folders left to their own pushes."""
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    _hide_capabilities(monkeypatch, hidden)
    listed = _listing(monkeypatch)
    with imap_login(dovecot, mailbox_user) as client:
        client.select('"INBOX"')
        client.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
        client.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
        client.expunge()
        append(client, "INBOX", make_message(600))
        append(client, "Archive", make_message(601))
    report = run_sync(runtime, TENANT_A, account_id, owner=uuid.uuid4().hex, folder="INBOX")
    assert listed == []
    assert (report.new_messages, report.deleted, report.folders) == (1, 1, 1)
    assert report.flag_updates >= 1
    local, server = _local_counts(runtime, account_id), _server_counts(dovecot, mailbox_user)
    assert local["INBOX"] == server["INBOX"] == FOLDERS["INBOX"]
    assert local["Archive"] == server["Archive"] - 1  # Archive's own push brings it
    with runtime.db.session() as session:
        inbox = session.scalars(select(Folder).where(Folder.raw_name == "INBOX")).one()
        assert inbox.message_count == server["INBOX"]
        state = sync_state.status(session, TENANT_A, account_id)
        assert state.state == "ok" and state.folders["INBOX"]["percent"] == 100.0
    again = run_sync(runtime, TENANT_A, account_id, owner=uuid.uuid4().hex, folder="INBOX")
    assert (again.new_messages, again.deleted, again.flag_updates, again.bytes) == (0, 0, 0, 0)
    assert listed == []


def test_a_pushed_sync_of_a_folder_gone_from_the_server_lists_the_folders(
    runtime: Any, dovecot: Any, mailbox_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    with imap_login(dovecot, mailbox_user) as client:
        client.delete('"Entw&APw-rfe"')
    listed = _listing(monkeypatch)
    report = run_sync(runtime, TENANT_A, account_id, owner=uuid.uuid4().hex, folder="Entw&APw-rfe")
    assert listed == ["LIST"]
    assert report.new_messages == 0
    assert "Entw&APw-rfe" not in _local_counts(runtime, account_id)
    assert _local_counts(runtime, account_id) == _server_counts(dovecot, mailbox_user)


def _logins(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each new IMAP session's login, as it happens (a pooled session's reuse is none)."""
    opened: list[int] = []
    real = gateways.open_imap

    def counting(runtime: Any, login: Any) -> Any:
        opened.append(1)
        return real(runtime, login)

    monkeypatch.setattr(gateways, "open_imap", counting)
    return opened


def test_a_resync_reuses_the_logged_in_session_and_replaces_a_dead_one(
    runtime: Any, dovecot: Any, mailbox_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from email_service.services.imap_pool import imap_pool

    logins = _logins(monkeypatch)
    account_id = _account(runtime, dovecot, mailbox_user)
    _sync(runtime, account_id)
    with imap_login(dovecot, mailbox_user) as client:
        append(client, "Archive", make_message(99), "")
    report = _sync(runtime, account_id)  # the same session: no second login
    assert (len(logins), report.new_messages) == (1, 1)
    assert _local_counts(runtime, account_id) == _server_counts(dovecot, mailbox_user)

    # The kept session dies while idle (a server restart, a NAT timeout): the next run
    # notices before it starts, logs in again and syncs as usual.
    pool = imap_pool(runtime)
    (pooled,) = [p for login, p in pool._idle if login.username == mailbox_user.email]
    assert pooled.imap.selected is not None  # left in the last folder it synced
    pooled.imap._conn.sock.shutdown(socket.SHUT_RDWR)
    with imap_login(dovecot, mailbox_user) as client:
        append(client, "INBOX", make_message(100), "")
    report = _sync(runtime, account_id)
    assert (len(logins), report.new_messages) == (2, 1)
    assert _local_counts(runtime, account_id) == _server_counts(dovecot, mailbox_user)


def test_a_changed_password_is_not_served_by_the_kept_session(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account_id = _account(runtime, dovecot, mail_user)
    _sync(runtime, account_id)  # a session logged in with the right password is kept
    _sync_with_a_wrong_password(runtime, account_id)
    with runtime.db.session() as session:
        assert sync_state.status(session, TENANT_A, account_id).state == "auth_failed"


def test_a_status_read_is_one_statement_and_another_tenant_gets_not_found(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    """The status row answers for its tenant alone: the account is read only when the row
    is missing (or not the tenant's)."""
    from sqlalchemy import event

    from email_service.errors import NotFoundError
    from email_service.store import scope
    from tests.conftest import TENANT_B

    account_id = _account(runtime, dovecot, mail_user)
    _sync(runtime, account_id)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "account_sync" in statement or "email_account" in statement:
            statements.append(statement)

    event.listen(runtime.db.engine, "before_cursor_execute", count)
    try:
        with scope.tenant_scope(TENANT_A), runtime.db.session() as session:
            assert sync_state.status(session, TENANT_A, account_id).state == "ok"
        assert len(statements) == 1 and "email_account" not in statements[0], statements
        with (
            scope.tenant_scope(TENANT_B),
            runtime.db.session() as session,
            pytest.raises(NotFoundError),
        ):
            sync_state.status(session, TENANT_B, account_id)
        assert "email_account" in statements[-1]  # the row hidden or not B's: the account
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", count)


def test_two_transactions_making_the_first_status_row_at_once_both_go_on(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    """A trigger and a run (or two processes' triggers) that both find no status row make
    it at once: the second waits for the first's commit, then uses that row instead of
    failing on the duplicate key (a 500 from POST /api/sync/imap before)."""
    import threading

    import psycopg
    from sqlalchemy import text

    from email_service.store import scope
    from tests.servers.postgres import PG_ADMIN_URL
    from tests.servers.wait import wait_for

    if runtime.db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the second never reads before the commit")
    account_id = _account(runtime, dovecot, mail_user)
    with runtime.db.session() as session:
        assert session.get(SyncState, account_id) is None
    failures: list[BaseException] = []
    backend: list[int] = []

    def queue_a_job() -> None:
        try:
            with scope.tenant_scope(TENANT_A), runtime.db.session() as session:
                backend.append(session.scalar(text("SELECT pg_backend_pid()")))
                sync_state.mark_queued(session, TENANT_A, account_id, "the-second")
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failures.append(exc)

    def waiting_for_a_lock() -> bool:
        if not backend:
            return False
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:  # sees every backend
            row = admin.execute("SELECT pg_blocking_pids(%s)", (backend[0],)).fetchone()
        return bool(row and row[0]) or bool(failures)

    second = threading.Thread(target=queue_a_job)
    with scope.tenant_scope(TENANT_A), runtime.db.session() as first:
        assert sync_state.status(first, TENANT_A, account_id).state == "idle"  # made, not committed
        second.start()
        wait_for(waiting_for_a_lock, "the second transaction to wait for the row's key")
    second.join(30)
    assert not second.is_alive() and failures == [], failures
    with scope.tenant_scope(TENANT_A), runtime.db.session() as session:
        current = sync_state.status(session, TENANT_A, account_id)
    assert (current.state, current.job_id) == ("queued", "the-second")


def test_large_values_of_a_synced_batch_are_compressed_with_lz4(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    """PostgreSQL with lz4 stores a COPYed batch's bodies lz4-compressed (not pglz), and
    they read back as parsed; the server's own default is left alone."""
    from sqlalchemy import text

    from email_service.services.sync.ingest import COPY_MIN_ROWS

    if runtime.db.dialect != "postgresql":
        pytest.skip("TOAST compression is PostgreSQL's")
    with runtime.db.session() as session:
        offered = session.scalar(
            text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        )
        default = session.scalar(text("SHOW default_toast_compression"))
    if not offered:
        pytest.skip("this PostgreSQL was built without lz4")
    with imap_login(dovecot, mail_user) as client:
        for n in range(COPY_MIN_ROWS + 2):
            append(client, "INBOX", make_message(n, html=True, size_kb=8), "")
    account_id = _account(runtime, dovecot, mail_user)
    _sync(runtime, account_id)
    with runtime.db.session() as session:
        kinds = session.execute(
            text(
                "SELECT pg_column_compression(body_text), pg_column_compression(body_html),"
                " count(*) FROM email_message WHERE account_id = :a GROUP BY 1, 2"
            ),
            {"a": account_id},
        ).all()
        assert kinds == [("lz4", "lz4", COPY_MIN_ROWS + 2)]
        stored = session.scalars(select(Message).where(Message.account_id == account_id)).first()
        assert stored is not None
        again = _prepare_again(runtime, stored, stored.uid, frozenset())
        assert (stored.body_text, stored.body_html) == (
            again.row["body_text"],
            again.row["body_html"],
        )
        assert len(stored.body_html or "") > 4000  # above the TOAST threshold (2 kB)
        assert session.scalar(text("SHOW default_toast_compression")) == default
