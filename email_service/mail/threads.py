"""Threading: a stable thread id for each message as it arrives, and JWZ for whole mailboxes.

A thread is a connected component of the link relation of
:mod:`~email_service.mail.threadkeys`: shared ids in Message-ID/References/In-Reply-To,
or the narrowed subject fallback. :func:`~email_service.mail.jwz.thread_messages` computes
it for a batch (Jamie Zawinski's algorithm); :func:`assign_thread` keeps it up to date one
message at a time, through a storage-agnostic :class:`ThreadIndex`:

1. look up the threads of stored messages whose id set meets the new message's — its own
   Message-ID (a copy in another folder; a reply that arrived first and referenced it) and
   every id it references (the parent; a sibling that references the same missing parent);
2. if the new message is a subject orphan, add the threads of messages with its subject key
   dated within ``SUBJECT_WINDOW``; otherwise add those of subject orphans in that window;
3. none found: a new thread. One: join it. Several: the message bridges them — keep the
   smallest id and report the others as merged.

The store then records the message under ``thread_id`` with its id set (so ids that were
only *referenced* are remembered: a parent arriving later finds its children), its subject
key, date and orphan bit, and re-points every message of ``merged_thread_ids`` to
``thread_id``. Because links are symmetric and every link is found when the later of its
two messages arrives, the final partition does not depend on arrival order, and equals
the batch one. Scope the index to one account: threads never cross mailboxes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from email_service.mail.jwz import ThreadNode, build_forest, thread_messages
from email_service.mail.threadkeys import (
    SUBJECT_WINDOW,
    ThreadInput,
    clean_message_id,
    is_reply_subject,
    normalize_subject,
    parse_references,
    partition,
    subject_linked,
)

__all__ = [
    "MemoryThreadIndex",
    "ThreadAssignment",
    "ThreadIndex",
    "ThreadInput",
    "ThreadNode",
    "assign_thread",
    "build_forest",
    "clean_message_id",
    "is_reply_subject",
    "normalize_subject",
    "parse_references",
    "partition",
    "subject_linked",
    "thread_messages",
]


class ThreadIndex(Protocol):
    """What the assigner asks of a store about messages already threaded."""

    def threads_by_ids(self, message_ids: Collection[str]) -> set[str]:
        """Thread ids of stored messages whose own Message-ID or a referenced id is given."""
        ...

    def threads_by_subject(
        self, subject_key: str, since: datetime, until: datetime, *, orphans_only: bool
    ) -> set[str]:
        """Thread ids of stored messages with this subject key dated in [since, until]."""
        ...


@dataclass(frozen=True)
class ThreadAssignment:
    """Where a new message goes, and which threads it merges into that one."""

    thread_id: str
    merged_thread_ids: frozenset[str] = frozenset()
    is_new: bool = False


def _random_thread_id() -> str:
    return uuid.uuid4().hex


def assign_thread(
    message: ThreadInput,
    index: ThreadIndex,
    new_thread_id: Callable[[], str] = _random_thread_id,
) -> ThreadAssignment:
    """The thread a new message joins, given what the index already holds."""
    found = index.threads_by_ids(message.link_ids) if message.link_ids else set()
    found |= _subject_threads(message, index)
    if not found:
        return ThreadAssignment(new_thread_id(), is_new=True)
    keep = min(found)
    return ThreadAssignment(keep, frozenset(found - {keep}))


def _subject_threads(message: ThreadInput, index: ThreadIndex) -> set[str]:
    """Threads the subject fallback links the message to (see threadkeys)."""
    if message.date is None or not message.subject_key:
        return set()
    since, until = message.date - SUBJECT_WINDOW, message.date + SUBJECT_WINDOW
    orphans_only = not message.is_subject_orphan
    return index.threads_by_subject(message.subject_key, since, until, orphans_only=orphans_only)


@dataclass
class _Row:
    """What the in-memory index keeps of one message."""

    message: ThreadInput
    thread_id: str


@dataclass
class MemoryThreadIndex:
    """A :class:`ThreadIndex` in memory, for tests and batch rebuilds."""

    rows: dict[str, _Row] = field(default_factory=dict)
    by_link_id: dict[str, set[str]] = field(default_factory=dict)
    by_subject: dict[str, set[str]] = field(default_factory=dict)
    orphans_by_subject: dict[str, set[str]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)

    def threads_by_ids(self, message_ids: Collection[str]) -> set[str]:
        """Thread ids of messages seen with, or referencing, any of these ids."""
        keys = set().union(*(self.by_link_id.get(i, set()) for i in message_ids))
        return {self.rows[key].thread_id for key in keys}

    def threads_by_subject(
        self, subject_key: str, since: datetime, until: datetime, *, orphans_only: bool
    ) -> set[str]:
        """Thread ids of messages with this subject key dated in [since, until]."""
        table = self.orphans_by_subject if orphans_only else self.by_subject
        rows = (self.rows[key] for key in table.get(subject_key, set()))
        return {
            row.thread_id
            for row in rows
            if row.message.date is not None and since <= row.message.date <= until
        }

    def add(self, message: ThreadInput, assignment: ThreadAssignment) -> None:
        """Record a message under its assignment and re-point the merged threads."""
        for merged in assignment.merged_thread_ids:
            for key in self.members.pop(merged, set()):
                self.rows[key].thread_id = assignment.thread_id
                self.members.setdefault(assignment.thread_id, set()).add(key)
        if (old := self.rows.get(message.key)) is not None:
            self.members.get(old.thread_id, set()).discard(message.key)
        self.rows[message.key] = _Row(message, assignment.thread_id)
        self.members.setdefault(assignment.thread_id, set()).add(message.key)
        for link_id in message.link_ids:
            self.by_link_id.setdefault(link_id, set()).add(message.key)
        self.by_subject.setdefault(message.subject_key, set()).add(message.key)
        if message.is_subject_orphan:
            self.orphans_by_subject.setdefault(message.subject_key, set()).add(message.key)

    def ingest(self, message: ThreadInput) -> ThreadAssignment:
        """Assign a thread to a new message and record it."""
        assignment = assign_thread(message, self)
        self.add(message, assignment)
        return assignment

    def thread_of(self, key: str) -> str:
        """The thread id of a recorded message."""
        return self.rows[key].thread_id

    def assignments(self) -> dict[str, str]:
        """Every recorded message key → its thread id."""
        return {key: row.thread_id for key, row in self.rows.items()}
