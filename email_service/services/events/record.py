"""One-line change-log calls for the write sites (sync, ingest, write-back, drafts, outbox).

Each helper only notes changes on the caller's session (``store/change_log.record``):
they are written when, and only if, the caller's transaction commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from email_service.store.change_log import ChangeType, Op, record, record_many
from email_service.store.models import Account, Draft, Folder, Message

# Parameters per IN list: under SQLite's limit, few round trips for a large expunge.
ID_CHUNK = 500
# Outbox states announced as ``send.<detail>`` (others are plain ``send.updated``).
SEND_DETAILS = {"sent": "sent", "failed": "failed", "bounced": "bounced"}
# Sync end states announced as ``sync.failed``.
SYNC_FAILED = frozenset({"error", "auth_failed"})


def new_messages(
    session: Session, rows: Sequence[dict[str, object]], ids: Iterable[uuid.UUID]
) -> None:
    """Messages just inserted (``rows`` are their column dicts, one account's)."""
    if not rows:
        return
    tenant, account = str(rows[0]["tenant_id"]), rows[0]["account_id"]
    assert isinstance(account, uuid.UUID)
    record_many(session, tenant, account, ChangeType.MESSAGE, sorted(ids), Op.CREATED)


def message_rows(session: Session, rows: Iterable[Message], op: Op) -> None:
    """ORM message rows changed (flags, folder) or about to be deleted."""
    for row in rows:
        record(session, row.tenant_id, row.account_id, ChangeType.MESSAGE, row.id, op)


def messages_changed(rows: Iterable[Message], op: Op = Op.UPDATED) -> None:
    """Like :func:`message_rows`, for rows attached to a session."""
    for row in rows:
        session = object_session(row)
        if session is not None:
            record(session, row.tenant_id, row.account_id, ChangeType.MESSAGE, row.id, op)


def messages_by_id(session: Session, ids: Sequence[uuid.UUID], op: Op) -> None:
    """Messages named by id (read before they are deleted)."""
    for start in range(0, len(ids), ID_CHUNK):
        query = select(Message.id, Message.tenant_id, Message.account_id).where(
            Message.id.in_(ids[start : start + ID_CHUNK])
        )
        for message_id, tenant, account in session.execute(query):
            record(session, tenant, account, ChangeType.MESSAGE, message_id, op)


def messages_by_uid(
    session: Session,
    folder_id: uuid.UUID,
    uids: Sequence[int],
    op: Op,
    uidvalidity: int | None = None,
) -> None:
    """Messages of a folder named by UID (read before a delete, or after an update)."""
    for start in range(0, len(uids), ID_CHUNK):
        query = select(Message.id, Message.tenant_id, Message.account_id).where(
            Message.folder_id == folder_id, Message.uid.in_(uids[start : start + ID_CHUNK])
        )
        if uidvalidity is not None:
            query = query.where(Message.uidvalidity == uidvalidity)
        for message_id, tenant, account in session.execute(query):
            record(session, tenant, account, ChangeType.MESSAGE, message_id, op)


def folder(session: Session, row: Folder, op: Op) -> None:
    """A folder created, renamed/changed, or removed."""
    record(session, row.tenant_id, row.account_id, ChangeType.FOLDER, row.id, op)


def folder_removed(session: Session, row: Folder) -> None:
    """A folder and its messages about to be deleted (the messages go by cascade)."""
    ids = list(session.scalars(select(Message.id).where(Message.folder_id == row.id)))
    record_many(session, row.tenant_id, row.account_id, ChangeType.MESSAGE, ids, Op.DESTROYED)
    folder(session, row, Op.DESTROYED)


def sync_ended(session: Session, tenant_id: str, account_id: uuid.UUID, state: str) -> None:
    """A sync run ended in ``state``: ``sync.updated``, or ``sync.failed`` when it failed."""
    detail = "failed" if state in SYNC_FAILED else None
    record(session, tenant_id, account_id, ChangeType.SYNC, account_id, Op.UPDATED, detail)


def sync_changed(
    session: Session,
    tenant_id: str,
    account_id: uuid.UUID,
    detail: str | None,
    op: Op = Op.UPDATED,
) -> None:
    """An account's sync status was made or changed before its run ended: ``sync.queued``,
    ``sync.started``, ``sync.progress`` (the end is :func:`sync_ended`)."""
    record(session, tenant_id, account_id, ChangeType.SYNC, account_id, op, detail)


def account_status_set(
    session: Session, tenant_id: str, account_id: uuid.UUID, status: str
) -> None:
    """An account's status was changed to ``status`` (by an UPDATE that matched only another
    status, or through :func:`account_status`): ``account.auth_failed`` when its login was
    refused, else ``account.updated``."""
    detail = "auth_failed" if status == "auth_failed" else None
    record(session, tenant_id, account_id, ChangeType.ACCOUNT, account_id, Op.UPDATED, detail)


def account_status(session: Session, row: Account, before: str) -> None:
    """An account's status changed (``account.auth_failed`` when its login was refused), or
    only the reason it shows (``auth_error``): ``account.updated``."""
    if row.status == before:
        if session.is_modified(row):
            record(session, row.tenant_id, row.id, ChangeType.ACCOUNT, row.id, Op.UPDATED)
        return
    account_status_set(session, row.tenant_id, row.id, row.status)


def draft(session: Session, row: Draft, op: Op) -> None:
    """A draft created, changed or deleted."""
    record(session, row.tenant_id, row.account_id, ChangeType.DRAFT, row.id, op)


def send_bounced(
    session: Session, tenant_id: str, account_id: uuid.UUID, outbox_id: uuid.UUID, failed: bool
) -> None:
    """A bounce recorded on a send: ``send.bounced`` for a failure, else ``send.updated``."""
    detail = "bounced" if failed else None
    record(session, tenant_id, account_id, ChangeType.OUTBOX, outbox_id, Op.UPDATED, detail)


def outbox(
    session: Session,
    tenant_id: str,
    account_id: uuid.UUID,
    outbox_id: uuid.UUID,
    state: str,
    op: Op = Op.UPDATED,
) -> None:
    """An outbox item queued or moved to ``state`` (``send.sent``/``send.failed`` ...)."""
    record(
        session, tenant_id, account_id, ChangeType.OUTBOX, outbox_id, op, SEND_DETAILS.get(state)
    )
