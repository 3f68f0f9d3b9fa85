"""Folder rows for the sync engine: reconcile with LIST, checkpoints, counts, re-keying."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from email_service.mail.imap.session import FetchedMessage
from email_service.mail.imap.session import Folder as ServerFolder
from email_service.services.events import record as announce
from email_service.services.sync.ingest import (
    ROW_PARAM,
    flag_values,
    message_table,
    row_binds,
    row_params,
)
from email_service.store.change_log import ChangeType, Op, record, record_many
from email_service.store.db import Database
from email_service.store.models import Folder, Message, utcnow


def reconcile(
    session: Session, tenant_id: str, account_id: uuid.UUID, server: Sequence[ServerFolder]
) -> dict[str, uuid.UUID]:
    """Create/update a row per server folder, drop rows of folders gone; raw name -> id."""
    rows = {
        f.raw_name: f
        for f in session.scalars(select(Folder).where(Folder.account_id == account_id))
    }
    seen: dict[str, uuid.UUID] = {}
    for remote in server:
        row = rows.get(remote.raw_name)
        before = None if row is None else _shown(row)
        if row is None:
            row = Folder(
                tenant_id=tenant_id,
                account_id=account_id,
                raw_name=remote.raw_name,
                message_count=0,
                unread_count=0,
            )
            session.add(row)
        row.name, row.delimiter, row.role = remote.name, remote.delimiter, remote.role
        row.attributes, row.selectable = sorted(remote.flags), remote.selectable
        session.flush()
        seen[remote.raw_name] = row.id
        if before != _shown(row):
            announce.folder(session, row, Op.CREATED if before is None else Op.UPDATED)
    for raw_name, row in rows.items():
        if raw_name not in seen:  # deleted or renamed on the server: its messages go too
            announce.folder_removed(session, row)
            session.delete(row)
    return seen


def _shown(row: Folder) -> tuple[object, ...]:
    """What LIST sets of a folder row."""
    return (row.name, row.delimiter, row.role, row.selectable, list(row.attributes or []))


def local_states(
    session: Session, folder_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[int | None, int | None, int | None, int]]:
    """Per folder: (uidvalidity, uidnext, highestmodseq, messages stored at that checkpoint),
    in one statement whatever the number of folders or messages.

    The stored count is the folder's counter, which every checkpoint sets from its rows
    (and a client's move or delete refreshes, :func:`recount`): counting the rows instead
    would read every message of the account on each run, a run with nothing to do included.
    """
    if not folder_ids:
        return {}
    rows = session.execute(
        select(
            Folder.id,
            Folder.uidvalidity,
            Folder.uidnext,
            Folder.highestmodseq,
            Folder.message_count,
        ).where(Folder.id.in_(folder_ids))
    )
    return {
        row.id: (row.uidvalidity, row.uidnext, row.highestmodseq, row.message_count or 0)
        for row in rows
    }


@dataclass(frozen=True)
class Checkpoint:
    """A synced folder as our copy last saw it: enough to resync it without a LIST."""

    folder_id: uuid.UUID
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int | None
    messages: int  # the folder's counter: its stored messages at the last checkpoint


def checkpoint_of(session: Session, account_id: uuid.UUID, raw_name: str) -> Checkpoint | None:
    """The folder's checkpoint, or None if it has none (never synced, or no such row)."""
    row = session.execute(
        select(
            Folder.id,
            Folder.name,
            Folder.uidvalidity,
            Folder.uidnext,
            Folder.highestmodseq,
            Folder.message_count,
            Folder.selectable,
        ).where(Folder.account_id == account_id, Folder.raw_name == raw_name)
    ).first()
    if row is None or row.uidvalidity is None or row.uidnext is None or not row.selectable:
        return None
    return Checkpoint(
        row.id, row.name, row.uidvalidity, row.uidnext, row.highestmodseq, row.message_count
    )


def checkpoint(
    session: Session, folder_id: uuid.UUID, uidvalidity: int, uidnext: int, modseq: int | None
) -> None:
    """Record that everything below ``uidnext`` is stored; refresh the counters.

    The checkpoint itself is the sync's bookkeeping, but ``synced_at`` and the counters
    are what a client sees of the folder: ``folder.updated``.
    """
    owner = session.execute(
        update(Folder)
        .where(Folder.id == folder_id)
        .values(
            uidvalidity=uidvalidity,
            uidnext=uidnext,
            highestmodseq=modseq,
            synced_at=utcnow(),
            **counters(session, folder_id),
        )
        .returning(Folder.tenant_id, Folder.account_id)
    ).first()
    if owner is not None:
        record(session, owner.tenant_id, owner.account_id, ChangeType.FOLDER, folder_id, Op.UPDATED)


def counters(session: Session, folder_id: uuid.UUID) -> dict[str, int]:
    """The folder's ``message_count`` and ``unread_count`` from the stored messages (one
    statement)."""
    unread = func.count().filter(Message.seen.is_(False))
    total, unseen = session.execute(
        select(func.count(), unread).where(Message.folder_id == folder_id)
    ).one()
    return {"message_count": int(total or 0), "unread_count": int(unseen or 0)}


def recount(session: Session, folder_ids: set[uuid.UUID]) -> None:
    """Refresh the counters of folders whose messages a client changed (``folder.updated``
    when they moved), so a read message leaves the unread count at once, not at the next sync."""
    session.flush()
    for row in session.scalars(select(Folder).where(Folder.id.in_(folder_ids))):
        values = counters(session, row.id)
        if (row.message_count, row.unread_count) != tuple(values.values()):
            row.message_count, row.unread_count = values["message_count"], values["unread_count"]
            announce.folder(session, row, Op.UPDATED)


def old_rows_by_digest(
    db: Database, folder_id: uuid.UUID, uidvalidity: int
) -> dict[str, list[uuid.UUID]]:
    """Rows of a past UIDVALIDITY, grouped by the SHA-256 of their raw bytes."""
    grouped: dict[str, list[uuid.UUID]] = defaultdict(list)
    with db.session() as session:
        query = select(Message.blob_sha256, Message.id).where(
            Message.folder_id == folder_id, Message.uidvalidity == uidvalidity
        )
        for digest, row_id in session.execute(query):
            grouped[digest].append(row_id)
    return grouped


def rekey(
    session: Session,
    tenant_id: str,
    account_id: uuid.UUID,
    uidvalidity: int,
    survivors: Sequence[tuple[uuid.UUID, FetchedMessage]],
) -> int:
    """Give surviving messages their new UIDVALIDITY/UID, keeping everything else.

    One UPDATE by id executed for all of them (an executemany): re-keying 2,000 messages
    one transaction each made a remap slower than syncing the folder afresh. The ids stay;
    the flags are the server's now, so each is ``message.updated``.
    """
    if not survivors:
        return 0
    table = message_table()
    columns = ["uid", "modseq", *flag_values(frozenset())]
    statement = (
        update(table)
        .where(table.c.id == bindparam(ROW_PARAM + "id"))
        .values(uidvalidity=uidvalidity, **row_binds(columns))
    )
    rows = [
        row_params(
            {
                "id": row_id,
                "uid": fetched.uid,
                "modseq": fetched.modseq,
                **flag_values(fetched.flags),
            }
        )
        for row_id, fetched in survivors
    ]
    result = session.execute(statement, rows)
    ids = [row_id for row_id, _fetched in survivors]
    record_many(session, tenant_id, account_id, ChangeType.MESSAGE, ids, Op.UPDATED)
    return int(getattr(result, "rowcount", 0))


def delete_rows(session: Session, ids: Sequence[uuid.UUID]) -> int:
    """Delete messages by id."""
    removed = 0
    for start in range(0, len(ids), 500):
        announce.messages_by_id(session, ids[start : start + 500], Op.DESTROYED)
        result = session.execute(delete(Message).where(Message.id.in_(ids[start : start + 500])))
        removed += int(getattr(result, "rowcount", 0))
    return removed
