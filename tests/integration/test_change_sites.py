"""Write sites record their changes: a real Dovecot sync, another IMAP client's flag
changes and expunges, the API's flag change and drafts, on both backends, two tenants."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from email_service.mail.mime.build import Mailbox
from email_service.services import parsing
from email_service.services.events import feed
from email_service.services.oauth import credentials, tokens
from email_service.services.oauth.lock import DatabaseRefreshLock
from email_service.services.outgoing import compose, delivery, outbox, reconcile, send_steps
from email_service.services.outgoing.compose import DraftFields
from email_service.services.sync import folders as folders_repo
from email_service.services.sync import run
from email_service.services.sync import state as sync_state
from email_service.store import change_log
from email_service.store.models import Account, Draft, Folder, Message, Outbox, utcnow
from tests.conftest import TENANT_A, TENANT_B
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login, make_message

pytestmark = pytest.mark.dovecot


def _since(runtime: Any, tenant: str, state: str) -> Any:
    with runtime.db.session() as session:
        result = feed.changes_since(session, tenant, state, 10_000)
    assert not result.has_more_changes
    return result


def _now(runtime: Any, tenant: str) -> str:
    with runtime.db.session() as session:
        return feed.changes_since(session, tenant, None, 1).new_state


def _sync(runtime: Any, tenant: str, account_id: uuid.UUID) -> None:
    run.run_sync(runtime, tenant, account_id, owner=uuid.uuid4().hex)


def _stored(runtime: Any, account_id: uuid.UUID, folder: str | None = None) -> dict[int, str]:
    query = select(Message.uid, Message.id).where(Message.account_id == account_id)
    if folder is not None:
        query = query.join(Folder, Folder.id == Message.folder_id).where(Folder.raw_name == folder)
    with runtime.db.session() as session:
        return {uid: str(mid) for uid, mid in session.execute(query)}


def test_sync_records_new_flags_expunges_folders_and_its_end(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    with imap_login(dovecot, mail_user) as client:
        client.create("Archive")
        for n in range(3):
            append(client, "INBOX", make_message(n))
        append(client, "Archive", make_message(9))
    account = register(runtime, TENANT_A, dovecot, mail_user)
    other_start = _now(runtime, TENANT_B)
    start = _now(runtime, TENANT_A)
    _sync(runtime, TENANT_A, account)
    first = _since(runtime, TENANT_A, start)
    with runtime.db.session() as session:
        every = session.scalars(select(Message.id).where(Message.account_id == account))
        assert sorted(first.changes["message"].created) == sorted(str(i) for i in every)
    assert len(first.changes["message"].created) == 4
    with runtime.db.session() as session:
        folder_ids = {
            str(i) for i in session.scalars(select(Folder.id).where(Folder.account_id == account))
        }
    assert set(first.changes["folder"].created) == folder_ids
    assert first.changes["sync"].created == [str(account)]  # its status row, new

    inbox = _stored(runtime, account, "INBOX")
    with imap_login(dovecot, mail_user) as client:  # another client changes the mailbox
        client.select("INBOX")
        client.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
        client.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
        client.expunge()
        append(client, "INBOX", make_message(20))
    second = _since(runtime, TENANT_A, first.new_state)
    assert second.changes["message"].updated == []  # nothing until a sync looks
    _sync(runtime, TENANT_A, account)
    second = _since(runtime, TENANT_A, first.new_state)
    messages = second.changes["message"]
    assert messages.updated == [inbox[1]]
    assert messages.destroyed == [inbox[2]]
    assert messages.created == [_stored(runtime, account, "INBOX")[4]]
    assert _since(runtime, TENANT_B, other_start).changes["message"].created == []


def test_api_flag_change_and_drafts_are_recorded(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    with imap_login(dovecot, mail_user) as client:
        append(client, "INBOX", make_message(1))
    account = register(runtime, TENANT_A, dovecot, mail_user)
    _sync(runtime, TENANT_A, account)
    (message_id,) = _stored(runtime, account).values()
    start = _now(runtime, TENANT_A)
    from email_service.services import writeback

    writeback.request_change(
        runtime,
        TENANT_A,
        [uuid.UUID(message_id)],
        flags={"seen": True},
        add_keywords=[],
        remove_keywords=[],
    )
    with runtime.db.session() as session:
        draft = compose.create_draft(
            session,
            TENANT_A,
            DraftFields(account_id=account, subject="hi", given=frozenset({"subject"})),
        )
    with runtime.db.session() as session:
        compose.delete_draft(session, TENANT_A, draft.id)
    after = _since(runtime, TENANT_A, start)
    assert message_id in after.changes["message"].updated
    # created and destroyed within the window: left out; the rows are there
    assert after.changes["draft"].created == [] and after.changes["draft"].destroyed == []
    with runtime.db.session() as session:
        from email_service.store import change_log

        rows = change_log.read(session, TENANT_A, feed.decode_state(start), 100)
    assert [(r.type, r.op) for r in rows if r.type == "draft"] == [
        ("draft", "created"),
        ("draft", "destroyed"),
    ]


# --- sites that wrote without announcing ----------------------------------------------


def _rows(runtime: Any, tenant: str, start: str) -> list[tuple[str, str, str, str | None]]:
    """(type, entity, op, detail) of every change-log row after ``start``."""
    with runtime.db.session() as session:
        rows = change_log.read(session, tenant, feed.decode_state(start), 10_000)
    return [(r.type, r.entity_id, r.op, r.detail) for r in rows]


def _rolled_back(runtime: Any, tenant: str, change: Callable[[Session], object]) -> None:
    """``change`` run in a transaction that then fails: nothing of it is in the log."""
    start = _now(runtime, tenant)
    with pytest.raises(_AbortError), runtime.db.session() as session:
        change(session)
        session.flush()
        assert change_log.pending_count(session) > 0  # it did note its change
        raise _AbortError
    assert _rows(runtime, tenant, start) == []


class _AbortError(Exception):
    """Stands for any error that rolls a transaction back."""


def _synced_account(runtime: Any, dovecot: Any, mail_user: Any, messages: int = 2) -> uuid.UUID:
    with imap_login(dovecot, mail_user) as client:
        for n in range(messages):
            append(client, "INBOX", make_message(n))
    account = register(runtime, TENANT_A, dovecot, mail_user)
    _sync(runtime, TENANT_A, account)
    return account


def _inbox(runtime: Any, account: uuid.UUID) -> Folder:
    with runtime.db.session() as session:
        return session.scalars(
            select(Folder).where(Folder.account_id == account, Folder.raw_name == "INBOX")
        ).one()


def test_a_sync_announces_its_status_and_each_folder_checkpoint(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account = _synced_account(runtime, dovecot, mail_user)
    start = _now(runtime, TENANT_A)
    with imap_login(dovecot, mail_user) as client:
        append(client, "INBOX", make_message(7))
    _sync(runtime, TENANT_A, account)
    rows = _rows(runtime, TENANT_A, start)
    sync = [detail for type_, entity, _op, detail in rows if type_ == "sync"]
    assert sync[0] == "started" and sync[-1] is None  # started, progress..., ended
    assert "progress" in sync
    inbox = _inbox(runtime, account)
    assert ("folder", str(inbox.id), "updated", None) in rows  # synced_at and counts moved
    assert inbox.message_count == 3

    start = _now(runtime, TENANT_A)
    with runtime.db.session() as session:
        sync_state.mark_queued(session, TENANT_A, account, "job-1")
    assert _rows(runtime, TENANT_A, start) == [("sync", str(account), "updated", "queued")]
    _rolled_back(runtime, TENANT_A, lambda s: sync_state.mark_queued(s, TENANT_A, account, "job-2"))
    _rolled_back(
        runtime,
        TENANT_A,
        lambda s: folders_repo.checkpoint(s, inbox.id, inbox.uidvalidity or 1, 99, None),
    )


def test_a_uidvalidity_change_keeps_the_ids_and_announces_them_updated(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account = _synced_account(runtime, dovecot, mail_user)
    before = _stored(runtime, account, "INBOX")
    inbox = _inbox(runtime, account)
    old = (inbox.uidvalidity or 0) + 1000  # what the folder was, as far as the store knows
    with runtime.db.session() as session:
        session.execute(update(Folder).where(Folder.id == inbox.id).values(uidvalidity=old))
        session.execute(
            update(Message).where(Message.folder_id == inbox.id).values(uidvalidity=old)
        )
    start = _now(runtime, TENANT_A)
    _sync(runtime, TENANT_A, account)
    assert _stored(runtime, account, "INBOX") == before  # same ids, same UIDs
    changes = _since(runtime, TENANT_A, start).changes["message"]
    assert sorted(changes.updated) == sorted(before.values())
    assert changes.created == [] and changes.destroyed == []


def _threaded(message_id: str, subject: str, references: str = "") -> bytes:
    message = EmailMessage()
    message["From"], message["To"] = "x@example.org", "alice@example.test"
    message["Subject"], message["Message-ID"] = subject, message_id
    message["Date"] = "Thu, 01 Jan 2026 10:00:00 +0000"
    if references:
        message["References"] = references
    message.set_content("text")
    return message.as_bytes()


def _threads(runtime: Any, account: uuid.UUID) -> dict[str, str | None]:
    query = select(Message.id, Message.thread_id).where(Message.account_id == account)
    with runtime.db.session() as session:
        return {str(i): t for i, t in session.execute(query)}


def test_two_threads_joined_by_a_later_message_announce_the_stored_messages(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account = register(runtime, TENANT_A, dovecot, mail_user)
    with imap_login(dovecot, mail_user) as client:  # replies to two messages never seen
        append(client, "INBOX", _threaded("<a@example.test>", "Apples", "<p@example.test>"))
        append(client, "INBOX", _threaded("<b@example.test>", "Pears", "<q@example.test>"))
    _sync(runtime, TENANT_A, account)
    before = _threads(runtime, account)
    assert len(set(before.values())) == 2
    start = _now(runtime, TENANT_A)
    with imap_login(dovecot, mail_user) as client:  # one message that is both parents
        append(client, "INBOX", _threaded("<p@example.test>", "Plums", "<q@example.test>"))
    _sync(runtime, TENANT_A, account)
    after = _threads(runtime, account)
    assert len(set(after.values())) == 1
    moved = sorted(m for m, thread in before.items() if after[m] != thread)
    assert moved  # one of the two stored threads was re-pointed
    messages = _since(runtime, TENANT_A, start).changes["message"]
    assert sorted(messages.updated) == moved
    assert len(messages.created) == 1


def _queue(runtime: Any, account: uuid.UUID, reply_to: uuid.UUID | None = None) -> Outbox:
    """A draft to one outside recipient, frozen into an outbox row (not sent)."""
    given = {"to", "subject", "text"} | ({"in_reply_to"} if reply_to else set())
    fields = DraftFields(
        account_id=account,
        to=[Mailbox("someone@elsewhere.test")],
        subject="Hello",
        text="hi",
        in_reply_to=reply_to,
        given=frozenset(given),
    )
    with runtime.db.session() as session:
        draft = compose.create_draft(session, TENANT_A, fields)
    start = _now(runtime, TENANT_A)
    with runtime.db.session() as session:
        row = outbox.freeze(
            session, runtime.blobs.tenant(TENANT_A), session.get_one(Draft, draft.id), None
        )
    assert _rows(runtime, TENANT_A, start) == [
        ("outbox", str(row.id), "created", None),
        ("draft", str(draft.id), "updated", None),  # queued: its state and outbox_id
    ]
    return row


def _outbox_rows(runtime: Any, start: str) -> list[tuple[str, str | None]]:
    return [(op, d) for t, _e, op, d in _rows(runtime, TENANT_A, start) if t == "outbox"]


def test_claim_fence_crash_and_stale_recovery_of_a_send(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account = register(runtime, TENANT_A, dovecot, mail_user)
    row = _queue(runtime, account)
    owner = uuid.uuid4().hex
    start = _now(runtime, TENANT_A)
    claimed = delivery._claim(runtime, TENANT_A, row.draft_id, owner)
    assert claimed is not None and claimed[0].state == "sending"
    assert _outbox_rows(runtime, start) == [("updated", None)]  # sending, one attempt more

    start = _now(runtime, TENANT_A)
    delivery._fence(runtime, row.id, owner)  # the stage and lease only: bookkeeping
    assert _rows(runtime, TENANT_A, start) == []

    delivery._crashed(runtime, claimed[0], owner, RuntimeError("bug"))
    assert _outbox_rows(runtime, start) == [("updated", None)]
    with runtime.db.session() as session:
        assert session.get_one(Outbox, row.id).state == "needs_reconciliation"

    with runtime.db.session() as session:  # a worker that died while connecting
        session.execute(
            update(Outbox)
            .where(Outbox.id == row.id)
            .values(
                state="sending",
                stage="connecting",
                lease_expires_at=utcnow() - timedelta(minutes=1),
            )
        )
    start = _now(runtime, TENANT_A)
    assert delivery._recover_stale(runtime, claimed[0])
    assert _outbox_rows(runtime, start) == [("updated", None)]
    with runtime.db.session() as session:
        assert session.get_one(Outbox, row.id).state == "retrying"


def test_reconciling_a_send_found_delivered_and_its_sent_copy(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account = _synced_account(runtime, dovecot, mail_user, messages=1)
    (original,) = _stored(runtime, account, "INBOX").values()
    row = _queue(runtime, account, reply_to=uuid.UUID(original))
    with runtime.db.session() as session:  # the end of data went unanswered
        session.execute(
            update(Outbox).where(Outbox.id == row.id).values(state="needs_reconciliation")
        )
    with runtime.db.session() as session:
        fresh = session.get_one(Outbox, row.id)
    start = _now(runtime, TENANT_A)
    reconcile.reconcile(runtime, fresh)  # not found anywhere yet: one check more
    assert _outbox_rows(runtime, start) == [("updated", None)]
    with runtime.db.session() as session:
        assert session.get_one(Outbox, row.id).reconcile_checks == 1

    with runtime.db.session() as session:  # a sync stored it: it was delivered
        session.execute(
            update(Message)
            .where(Message.id == uuid.UUID(original))
            .values(message_id=row.message_id)
        )
        fresh = session.get_one(Outbox, row.id)
    start = _now(runtime, TENANT_A)
    reconcile.reconcile(runtime, fresh)
    rows = _rows(runtime, TENANT_A, start)
    assert ("outbox", str(row.id), "updated", "sent") in rows
    assert ("draft", str(row.draft_id), "destroyed", None) in rows
    assert ("message", original, "updated", None) in rows  # \\Answered on the original
    with runtime.db.session() as session:
        sent = session.get_one(Outbox, row.id)
        assert sent.state == "sent" and sent.sent_copy != "pending"
    assert rows[-1] == ("outbox", str(row.id), "updated", None)  # the Sent copy's outcome


def test_settling_only_the_sent_copy_is_announced_and_a_rollback_is_not(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account = register(runtime, TENANT_A, dovecot, mail_user)
    row = _queue(runtime, account)
    start = _now(runtime, TENANT_A)
    assert send_steps.settle(runtime, row, None, sent_copy="failed", last_error="Sent copy: no")
    assert _outbox_rows(runtime, start) == [("updated", None)]
    _rolled_back(runtime, TENANT_A, lambda s: outbox.release_draft(s, row))
    start = _now(runtime, TENANT_A)
    outbox.cancel(runtime, TENANT_A, row.id)  # the draft is editable again
    assert _rows(runtime, TENANT_A, start) == [
        ("draft", str(row.draft_id), "updated", None),
        ("outbox", str(row.id), "updated", None),
    ]


def test_removing_an_attachment_changes_its_draft(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account = register(runtime, TENANT_A, dovecot, mail_user)
    blobs = runtime.blobs.tenant(TENANT_A)
    with runtime.db.session() as session:
        upload = compose.add_attachment(session, blobs, TENANT_A, "a.txt", None, b"a", 100)
        draft = compose.create_draft(
            session,
            TENANT_A,
            DraftFields(account_id=account, attachments=[upload.id], given=frozenset()),
        )
    assert [a.id for a in draft.attachments] == [upload.id]
    _rolled_back(runtime, TENANT_A, lambda s: compose.delete_attachment(s, TENANT_A, upload.id))
    start = _now(runtime, TENANT_A)
    with runtime.db.session() as session:
        compose.delete_attachment(session, TENANT_A, upload.id)
    assert _rows(runtime, TENANT_A, start) == [("draft", str(draft.id), "updated", None)]


def test_account_error_text_new_tokens_and_the_refresh_lease(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    account = register(runtime, TENANT_A, dovecot, mail_user)
    start = _now(runtime, TENANT_A)
    tokens.mark_auth_failed(runtime, account, "refused")
    tokens.mark_auth_failed(runtime, account, "refused again")  # same status, new reason
    assert _rows(runtime, TENANT_A, start) == [
        ("account", str(account), "updated", "auth_failed"),
        ("account", str(account), "updated", None),
    ]
    start = _now(runtime, TENANT_A)
    with runtime.db.session() as session:
        before = session.get_one(Account, account).updated_at
    lock = DatabaseRefreshLock(runtime.db, 30)
    assert lock.acquire(account, "me")
    lock.release(account, "me")
    with runtime.db.session() as session:  # the lease is bookkeeping: the account is as it was
        assert session.get_one(Account, account).updated_at == before
    assert _rows(runtime, TENANT_A, start) == []
    grant = tokens.TokenSet("access", utcnow() + timedelta(hours=1), "refresh")
    with runtime.db.session() as session:
        credentials.replace_tokens(session, TENANT_A, account, grant, None, runtime.vault)
    assert _rows(runtime, TENANT_A, start) == [("account", str(account), "updated", None)]


def test_parsing_a_message_again_is_announced(runtime: Any, dovecot: Any, mail_user: Any) -> None:
    account = _synced_account(runtime, dovecot, mail_user, messages=1)
    (message_id,) = _stored(runtime, account).values()
    start = _now(runtime, TENANT_A)
    with runtime.db.session() as session:
        parsing.reparse(session, runtime.blobs.tenant(TENANT_A), TENANT_A, uuid.UUID(message_id))
    assert _rows(runtime, TENANT_A, start) == [("message", message_id, "updated", None)]
