"""A small increment of a folder (the new mail an incremental sync finds) stored as a
pipeline, in one transaction.

A run that finds a hundred new messages in a folder it has synced before spends its time
in three places that can work at once: Dovecot sending the bodies, this process parsing
them, and PostgreSQL storing the rows. Fetched in one batch and parsed, then inserted,
they would take the sum; here each message is parsed as it arrives (the server keeps
sending into the socket meanwhile), and every CHUNK parsed rows go to the writer thread,
which inserts them while the next ones are parsed. All chunks go into one transaction,
committed with the folder's checkpoint, so readers see the increment whole or not at all,
as they did when it was one batch; the blob store is made durable once, while the last
chunk is inserted, and before that commit.

Threads are the same as for one batch: a chunk is threaded against the stored messages,
the earlier chunks of this transaction included.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from email_service.services.sync import ingest
from email_service.store.db import Database

# Parsed rows per chunk handed to the database, each chunk one multi-row INSERT per table
# (no COPY: its savepoint, staging table and move are round trips, which a loaded machine
# makes slow). 20 cost more CPU and round trips than they saved by overlapping, measured
# in-process on 2 busy cores; 50 (two chunks for +100) was faster than one batch.
CHUNK = 50


class IncrementAbortedError(Exception):
    """The run stopped before the increment's checkpoint: its transaction rolls back."""


Chunk = tuple[list[ingest.Incoming], int]  # parsed rows and the bytes of their messages
Close = Callable[[Session], None]


@dataclass
class Increment:
    """Rows of one folder's increment on their way to the writer thread."""

    name: str  # the folder's name, for progress
    done: int  # the folder's stored rows before this increment
    total: int
    rows: list[ingest.Incoming] = field(default_factory=list)
    parsed: int = 0  # messages parsed so far
    size: int = 0  # and their bytes
    inserted: int = 0
    _pending: int = 0  # bytes of ``rows``
    _queue: queue.SimpleQueue[Chunk | Close | IncrementAbortedError] = field(
        default_factory=queue.SimpleQueue
    )

    def add(self, row: ingest.Incoming, size: int) -> None:
        """One parsed message; a full chunk goes to the database."""
        self.rows.append(row)
        self.parsed += 1
        self.size += size
        self._pending += size
        if len(self.rows) >= CHUNK:
            self.send()

    def send(self) -> None:
        """The rows parsed so far go to the database."""
        if self.rows:
            self._queue.put((self.rows, self._pending))
            self.rows, self._pending = [], 0

    def finish(self, close: Close) -> None:
        """The end of the increment: ``close(session)`` (the checkpoint), then the commit.
        Call it once the blobs of every row are durable."""
        self.send()
        self._queue.put(close)

    def abort(self) -> None:
        """Stop the writer's transaction (rolled back), if it still waits for rows."""
        self._queue.put(IncrementAbortedError("sync stopped before the checkpoint"))

    def write(
        self, db: Database, insert: Callable[[Session, list[ingest.Incoming], int, int], int]
    ) -> None:
        """On the writer thread: insert chunks as they come, until the close; then commit.
        ``insert(session, rows, size, done)`` returns the rows it inserted."""
        done = self.done
        with db.session() as session:
            while True:
                item = self._queue.get()
                if isinstance(item, IncrementAbortedError):
                    raise item
                if not isinstance(item, tuple):
                    item(session)
                    return
                rows, size = item
                done += len(rows)
                self.inserted += insert(session, rows, size, done)
