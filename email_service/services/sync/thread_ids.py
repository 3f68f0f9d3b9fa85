"""Thread ids for a batch of new messages, from the store plus the batch itself.

The batch's link ids and subject keys are looked up in two queries; assignment then runs
in memory (``mail.threads.assign_thread``), and merges of stored threads are applied with
one UPDATE per merged thread. Threads never cross accounts.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from email_service.mail.threadkeys import SUBJECT_WINDOW
from email_service.mail.threads import (
    MemoryThreadIndex,
    ThreadAssignment,
    ThreadInput,
    assign_thread,
)
from email_service.store.change_log import ChangeType, Op, record
from email_service.store.models import Message, ThreadLink

# SQLite allows 32,766 bound parameters; stay far below in IN (...) lists.
IN_CHUNK = 900


class BatchThreadIndex:
    """Stored threads touching this batch, plus the batch as it is assigned."""

    def __init__(
        self, session: Session, account_id: uuid.UUID, batch: Sequence[ThreadInput]
    ) -> None:
        self.memory = MemoryThreadIndex()
        self.alias: dict[str, str] = {}
        self.links: dict[str, set[str]] = {}
        self.subjects: dict[str, list[tuple[datetime, bool, str]]] = {}
        self._load(session, account_id, batch)

    def _load(self, session: Session, account_id: uuid.UUID, batch: Sequence[ThreadInput]) -> None:
        link_ids = sorted({i for m in batch for i in m.link_ids})
        for start in range(0, len(link_ids), IN_CHUNK):
            rows = session.execute(
                select(ThreadLink.link_id, ThreadLink.thread_id).where(
                    ThreadLink.account_id == account_id,
                    ThreadLink.link_id.in_(link_ids[start : start + IN_CHUNK]),
                )
            )
            for link_id, thread_id in rows:
                self.links.setdefault(link_id, set()).add(thread_id)
        keys = sorted({m.subject_key for m in batch if m.subject_key})
        for start in range(0, len(keys), IN_CHUNK):
            found = session.execute(
                select(
                    Message.subject_key,
                    Message.sent_at,
                    Message.received_date,
                    Message.subject_orphan,
                    Message.thread_id,
                ).where(
                    Message.account_id == account_id,
                    Message.subject_key.in_(keys[start : start + IN_CHUNK]),
                )
            )
            for key, sent, received, orphan, found_thread in found:
                if found_thread:
                    self.subjects.setdefault(key, []).append(
                        (sent or received, orphan, found_thread)
                    )

    def resolve(self, thread_id: str) -> str:
        """Follow merges made earlier in this batch."""
        while thread_id in self.alias:
            thread_id = self.alias[thread_id]
        return thread_id

    def threads_by_ids(self, message_ids: Collection[str]) -> set[str]:
        """Stored and batch threads sharing any of these ids."""
        found = set().union(*(self.links.get(i, set()) for i in message_ids))
        found |= self.memory.threads_by_ids(message_ids)
        return {self.resolve(t) for t in found}

    def threads_by_subject(
        self, subject_key: str, since: datetime, until: datetime, *, orphans_only: bool
    ) -> set[str]:
        """Stored and batch threads with this subject key in the window."""
        found = {
            t
            for when, orphan, t in self.subjects.get(subject_key, [])
            if since <= when <= until and (orphan or not orphans_only)
        }
        found |= self.memory.threads_by_subject(
            subject_key, since, until, orphans_only=orphans_only
        )
        return {self.resolve(t) for t in found}

    def assign(self, message: ThreadInput) -> ThreadAssignment:
        """Assign and remember one message of the batch."""
        assignment = assign_thread(message, self)
        for merged in assignment.merged_thread_ids:
            self.alias[merged] = assignment.thread_id
        self.memory.add(message, assignment)
        return assignment


def thread_input(row: dict[str, Any]) -> ThreadInput:
    """The threading view of a prepared message row."""
    return ThreadInput.from_headers(
        str(row["id"]),
        message_id=row.get("message_id"),
        references=" ".join(row.get("references") or []),
        in_reply_to=row.get("in_reply_to"),
        subject=row.get("subject"),
        date=row.get("sent_at") or row["received_date"],
    )


def assign_batch(
    session: Session, account_id: uuid.UUID, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Set ``thread_id``/``subject_key``/``subject_orphan`` on rows; return link rows.

    Stored threads merged by the batch are re-pointed in the same transaction.
    """
    inputs = [thread_input(r) for r in rows]
    index = BatchThreadIndex(session, account_id, inputs)
    for row, message in zip(rows, inputs, strict=True):
        row["thread_id"] = index.assign(message).thread_id
        row["subject_key"], row["subject_orphan"] = message.subject_key, message.is_subject_orphan
    for row in rows:
        row["thread_id"] = index.resolve(row["thread_id"])
    for merged in index.alias:
        keep = index.resolve(merged)
        moved = session.execute(
            update(Message)
            .where(Message.account_id == account_id, Message.thread_id == merged)
            .values(thread_id=keep)
            .returning(Message.id, Message.tenant_id)
            .execution_options(synchronize_session=False)
        ).all()
        for message_id, tenant_id in moved:  # a stored message joined another thread
            record(session, tenant_id, account_id, ChangeType.MESSAGE, message_id, Op.UPDATED)
        session.execute(
            update(ThreadLink)
            .where(ThreadLink.account_id == account_id, ThreadLink.thread_id == merged)
            .values(thread_id=keep)
        )
    return [
        {
            "account_id": account_id,
            "message_id": row["id"],
            "link_id": link_id,
            "thread_id": row["thread_id"],
        }
        for row, message in zip(rows, inputs, strict=True)
        for link_id in message.link_ids
    ]


__all__ = ["SUBJECT_WINDOW", "BatchThreadIndex", "assign_batch", "thread_input"]
