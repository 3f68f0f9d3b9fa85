"""Telling a trigger that waits (``Prefer: wait``) that a sync of its account ended.

A run announces its account once its end is committed (``run.py``). A waiter listens
*before* it queues or reads anything, so no end after that is missed, and reads the
status row again after each announcement: the row, not the message, says whose run ended
and how. With Redis (REDIS_URL, or a Redis broker) an announcement is a PUBLISH on a
per-account channel, which every API process can hear; without one the runs happen in
this process (the embedded runner) and a condition variable carries it. A lost
announcement (Redis briefly down, a worker on another broker) costs the waiter time, never
a wrong answer: it reads the row at least every RECHECK_S anyway.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, Protocol

import redis

from email_service.services.push.pending import push_redis_url

CHANNEL_PREFIX = "email-service:sync-ended:"
# A waiter reads the status row this often even if nothing is announced: the bound on how
# late a lost announcement makes it (and one primary-key read a second per waiter).
RECHECK_S = 1.0
# An announcement or a subscription must not hang a worker or a request thread on a
# stalled Redis: past this the waiter falls back to reading the row every RECHECK_S.
REDIS_TIMEOUT_S = 1.0
log = logging.getLogger(__name__)


def channel(account_id: uuid.UUID) -> str:
    """The account's Redis channel."""
    return f"{CHANNEL_PREFIX}{account_id}"


class Listener(Protocol):
    """One waiter's ear on one account."""

    def wait(self, timeout: float) -> bool:
        """Block until a run of the account is announced ended or ``timeout`` passes;
        True if one was."""


class SyncEnds(Protocol):
    """Where ends of runs are announced and heard."""

    def announce(self, account_id: uuid.UUID) -> None:
        """A run of the account ended, and its end is committed."""

    def listen(self, account_id: uuid.UUID) -> Any:
        """A context manager giving a :class:`Listener`; announcements from its entry on
        are heard."""


class _Sleeper:
    """No way to hear: wait out the timeout (the caller then reads the row)."""

    def wait(self, timeout: float) -> bool:
        """Sleep ``timeout`` seconds."""
        time.sleep(max(timeout, 0.0))
        return False


class _RedisListener:
    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub

    def wait(self, timeout: float) -> bool:
        """The next message on the channel, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                if self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left):
                    return True
        except redis.RedisError as exc:
            log.warning("sync end not heard (Redis: %s); reading the status instead", exc)
            time.sleep(max(deadline - time.monotonic(), 0.0))
        return False


class RedisSyncEnds:
    """PUBLISH/SUBSCRIBE on a channel per account."""

    def __init__(self, url: str) -> None:
        self.client: Any = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )

    def announce(self, account_id: uuid.UUID) -> None:
        """PUBLISH; a Redis failure is logged, not raised (the run itself succeeded)."""
        try:
            self.client.publish(channel(account_id), b"ended")
        except redis.RedisError as exc:
            log.warning("sync end not announced (Redis: %s)", exc)

    @contextmanager
    def listen(self, account_id: uuid.UUID) -> Iterator[Listener]:
        """SUBSCRIBE, and wait for Redis to confirm it: from then on no PUBLISH is missed."""
        pubsub = self.client.pubsub()
        try:
            try:
                pubsub.subscribe(channel(account_id))
                confirmed = pubsub.get_message(timeout=REDIS_TIMEOUT_S)
            except redis.RedisError as exc:
                log.warning("cannot listen for sync ends (Redis: %s)", exc)
                confirmed = None
            yield _RedisListener(pubsub) if confirmed else _Sleeper()
        finally:
            pubsub.close()


class _MemoryListener:
    def __init__(self, ends: MemorySyncEnds, account_id: uuid.UUID) -> None:
        self.ends = ends
        self.account_id = account_id
        self.seen = ends.count(account_id)

    def wait(self, timeout: float) -> bool:
        """Until the account's count moves past the one last seen."""
        with self.ends.moved:
            heard = self.ends.moved.wait_for(
                lambda: self.ends.ended.get(self.account_id, 0) != self.seen, timeout
            )
            self.seen = self.ends.ended.get(self.account_id, 0)
        return heard


class MemorySyncEnds:
    """A count of ended runs per account in this process, and a condition on it."""

    def __init__(self) -> None:
        self.moved = threading.Condition()
        self.ended: dict[uuid.UUID, int] = {}

    def count(self, account_id: uuid.UUID) -> int:
        """Runs of the account announced so far."""
        with self.moved:
            return self.ended.get(account_id, 0)

    def announce(self, account_id: uuid.UUID) -> None:
        """Count it and wake the waiters."""
        with self.moved:
            self.ended[account_id] = self.ended.get(account_id, 0) + 1
            self.moved.notify_all()

    @contextmanager
    def listen(self, account_id: uuid.UUID) -> Iterator[Listener]:
        """A listener that hears ends counted after this call."""
        yield _MemoryListener(self, account_id)


@cache
def memory_ends() -> MemorySyncEnds:
    """This process's (embedded runner: the runs and the waiters share it)."""
    return MemorySyncEnds()


@cache
def _redis_ends(url: str) -> RedisSyncEnds:
    return RedisSyncEnds(url)


def ends_for(redis_url: str | None, broker_url: str | None) -> SyncEnds:
    """Redis when configured (REDIS_URL, else a Redis broker), else this process's memory."""
    url = push_redis_url(redis_url, broker_url)
    return _redis_ends(url) if url else memory_ends()
