"""A single background thread that performs the sync's database writes, in order.

While PostgreSQL (another process, another core) stores batch n, the sync thread fetches
and parses batch n+1: psycopg and sqlite3 release the GIL while the database works. The
queue is short, so memory stays bounded by a couple of batches, and the first error stops
everything: it is raised in the sync thread at its next submit or drain.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from email_service.store.scope import carried

# Batches parsed ahead of the database: enough to keep both cores busy, few enough to keep
# peak memory at a few batches of raw messages.
QUEUE_DEPTH = 2
Work = Callable[[], None]


class BatchWriter:
    """Runs submitted work items one after another on its own thread."""

    def __init__(self, depth: int = QUEUE_DEPTH) -> None:
        self._queue: queue.Queue[Work | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        # The writes run in the sync's database scope (its tenant): the thread carries it.
        self._thread = threading.Thread(target=carried(self._loop), name="sync-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            work = self._queue.get()
            try:
                if work is None:
                    return
                if self._error is None:
                    work()
            except BaseException as exc:  # noqa: BLE001 - handed to the sync thread, re-raised there
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, work: Work) -> None:
        """Queue work (blocks while the queue is full); raises an earlier failure first."""
        self._raise()
        self._queue.put(work)

    def drain(self) -> None:
        """Wait until everything submitted is done; raise its failure, if any."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Stop the thread after the queued work (errors of that work are dropped)."""
        self._queue.put(None)
        self._thread.join()
