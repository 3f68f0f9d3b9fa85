"""Coalescing: at most one queued sync per account and folder.

The watcher marks ``(account, folder)`` before queueing (Redis ``SET NX`` with the time of
the change as value); the sync job takes the mark as it starts, so a change reported while
the sync runs queues exactly one more. Embedded (one process, no Redis) keeps the marks
in memory. A mark outlives a lost job by at most MARK_TTL_S: then the next change queues
again (beat's periodic sync covers the gap).
"""

from __future__ import annotations

import threading
import time
import uuid
from functools import cache
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

# How long a mark blocks new queueing if its job never runs (a worker lost it).
MARK_TTL_S = 120
PREFIX = "push:pending:"
ALL_FOLDERS = ""  # the folder "name" of a whole-account sync (after a reconnect)


def key(account_id: uuid.UUID, folder: str) -> str:
    """The mark's Redis key: folder names are the server's raw (modified UTF-7) names."""
    return f"{PREFIX}{account_id}:{folder}"


class Pending(Protocol):
    """The job's side of the marks."""

    def take(self, account_id: uuid.UUID, folder: str) -> float | None:
        """Clear the mark; the time of the change it stood for, if any."""

    def mark(self, account_id: uuid.UUID, folder: str, at: float) -> bool:
        """Set the mark unless set; True if this call set it (and must queue the job)."""


class AsyncPending(Protocol):
    """The watcher's side of the marks."""

    async def mark(self, account_id: uuid.UUID, folder: str, at: float) -> bool:
        """Set the mark unless set; True if this call set it (and must queue the job)."""


class RedisPending:
    """Marks in Redis, shared by every watcher and worker."""

    def __init__(self, url: str) -> None:
        self.client: Any = redis.Redis.from_url(url)

    def take(self, account_id: uuid.UUID, folder: str) -> float | None:
        """GETDEL the mark."""
        value = self.client.getdel(key(account_id, folder))
        return float(value) if value else None

    def mark(self, account_id: uuid.UUID, folder: str, at: float) -> bool:
        """SET NX EX."""
        return bool(self.client.set(key(account_id, folder), repr(at), nx=True, ex=MARK_TTL_S))


class AsyncRedisPending:
    """The same marks, for the watcher's event loop."""

    def __init__(self, url: str) -> None:
        self.client: Any = aioredis.Redis.from_url(url)

    async def mark(self, account_id: uuid.UUID, folder: str, at: float) -> bool:
        """SET NX EX."""
        done = await self.client.set(key(account_id, folder), repr(at), nx=True, ex=MARK_TTL_S)
        return bool(done)


class MemoryPending:
    """Marks in this process (embedded: the watcher and the jobs share it)."""

    def __init__(self) -> None:
        self.marks: dict[str, tuple[float, float]] = {}  # key -> (change time, expiry)
        self.lock = threading.Lock()

    def take(self, account_id: uuid.UUID, folder: str) -> float | None:
        """Pop the mark."""
        with self.lock:
            found = self.marks.pop(key(account_id, folder), None)
        return found[0] if found else None

    def mark(self, account_id: uuid.UUID, folder: str, at: float) -> bool:
        """Set unless a live mark exists."""
        name = key(account_id, folder)
        now = time.monotonic()
        with self.lock:
            found = self.marks.get(name)
            if found is not None and found[1] > now:
                return False
            self.marks[name] = (at, now + MARK_TTL_S)
            return True


class AsyncMemoryPending:
    """The in-memory marks seen from the event loop (never blocks for long)."""

    def __init__(self, marks: MemoryPending) -> None:
        self.marks = marks

    async def mark(self, account_id: uuid.UUID, folder: str, at: float) -> bool:
        """Set unless a live mark exists."""
        return self.marks.mark(account_id, folder, at)


@cache
def memory_pending() -> MemoryPending:
    """The process's in-memory marks (one per process, like the embedded runner)."""
    return MemoryPending()


@cache
def _redis_pending(url: str) -> RedisPending:
    return RedisPending(url)


def pending_for(redis_url: str | None) -> Pending:
    """Redis marks when Redis is configured, else this process's memory."""
    return _redis_pending(redis_url) if redis_url else memory_pending()


def async_pending_for(redis_url: str | None) -> AsyncPending:
    """The watcher's view of :func:`pending_for`."""
    return AsyncRedisPending(redis_url) if redis_url else AsyncMemoryPending(memory_pending())


def push_redis_url(redis_url: str | None, broker_url: str | None) -> str | None:
    """The Redis that holds marks and leases: REDIS_URL, else a Redis broker."""
    if redis_url:
        return redis_url
    if broker_url and broker_url.startswith(("redis://", "rediss://", "unix://")):
        return broker_url
    return None
