"""Write sites record their changes: a real Dovecot sync, another IMAP client's flag
changes and expunges, the API's flag change and drafts, on both backends, two tenants."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from email_service.services.events import feed
from email_service.services.outgoing import compose
from email_service.services.outgoing.compose import DraftFields
from email_service.services.sync import run
from email_service.store.models import Folder, Message
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
    assert first.changes["sync"].updated == [str(account)]

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
