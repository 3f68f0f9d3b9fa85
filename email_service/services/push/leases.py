"""Which watcher holds which account: leases in Redis, renewed, one holder each.

Each watcher has an id and, per account it watches, a key ``push:lease:<account>`` whose
value is its id, set with ``SET NX PX`` (so there is exactly one holder) and renewed every
tick by a script that extends only keys still holding its id. A watcher that dies, even by
``kill -9``, stops renewing: its keys expire after WATCH_LEASE_SECONDS and the others'
next tick takes them. Watchers also announce themselves in a sorted set scored by expiry;
the live count gives each its fair share, ``ceil(accounts / watchers)``: a watcher over it
lets go of the surplus, one under it takes free accounts.

Embedded (no Redis), :class:`LocalLeases` holds every account in this process.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis

LEASE_PREFIX = "push:lease:"
WATCHERS_KEY = "push:watchers"
# Extends the leases in KEYS still holding ARGV[1]; returns the keys that are not (lost).
_RENEW = """
local lost = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
  else
    table.insert(lost, k)
  end
end
return lost
"""
# Deletes the leases in KEYS that still hold ARGV[1].
_RELEASE = """
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 0
"""


class Leases(Protocol):
    """What the supervisor asks of a lease store."""

    holder: str

    async def heartbeat(self) -> int:
        """Announce this watcher as alive; return how many watchers are alive."""

    async def renew(self, held: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Extend the leases held; return those lost to expiry (another may hold them)."""

    async def acquire(self, candidates: Sequence[uuid.UUID], limit: int) -> list[uuid.UUID]:
        """Take up to ``limit`` free leases among ``candidates``; return those taken."""

    async def release(self, accounts: Iterable[uuid.UUID]) -> None:
        """Give leases back (a clean shutdown, or surplus over the fair share)."""

    async def leave(self) -> None:
        """Stop announcing this watcher."""


def lease_key(account_id: uuid.UUID) -> str:
    """The Redis key of an account's lease."""
    return f"{LEASE_PREFIX}{account_id}"


def fair_share(accounts: int, watchers: int) -> int:
    """How many accounts one of ``watchers`` should hold."""
    return math.ceil(accounts / max(1, watchers))


class RedisLeases:
    """Leases in Redis, shared by every watcher process."""

    def __init__(self, url: str, lease_seconds: float, holder: str | None = None) -> None:
        self.client: Any = aioredis.Redis.from_url(url)
        self.lease_ms = int(lease_seconds * 1000)
        # host:pid:random: an operator can tell which process holds an account
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    async def heartbeat(self) -> int:
        """ZADD this watcher with its expiry; drop the expired; count the rest."""
        now_ms = time.time() * 1000
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(WATCHERS_KEY, {self.holder: now_ms + self.lease_ms})
            pipe.zremrangebyscore(WATCHERS_KEY, "-inf", now_ms)
            pipe.zcard(WATCHERS_KEY)
            results = await pipe.execute()
        return int(results[-1])

    async def renew(self, held: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """One script call extends every lease still ours."""
        if not held:
            return set()
        by_key = {lease_key(a): a for a in held}
        lost = await self._renew(keys=list(by_key), args=[self.holder, self.lease_ms])
        return {by_key[k.decode() if isinstance(k, bytes) else k] for k in lost}

    async def acquire(self, candidates: Sequence[uuid.UUID], limit: int) -> list[uuid.UUID]:
        """MGET to find free leases, then SET NX PX on up to ``limit`` of them."""
        if limit <= 0 or not candidates:
            return []
        holders = await self.client.mget([lease_key(a) for a in candidates])
        free = [a for a, h in zip(candidates, holders, strict=True) if h is None][:limit]
        if not free:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for account in free:
                pipe.set(lease_key(account), self.holder, nx=True, px=self.lease_ms)
            results = await pipe.execute()
        return [a for a, ok in zip(free, results, strict=True) if ok]

    async def release(self, accounts: Iterable[uuid.UUID]) -> None:
        """Delete the leases that are still ours."""
        keys = [lease_key(a) for a in accounts]
        if keys:
            await self._release(keys=keys, args=[self.holder])

    async def leave(self) -> None:
        """ZREM this watcher."""
        await self.client.zrem(WATCHERS_KEY, self.holder)

    async def close(self) -> None:
        """Close the Redis connections."""
        await self.client.aclose()


class LocalLeases:
    """Embedded: this process is the only watcher and holds every account."""

    holder = "local"

    async def heartbeat(self) -> int:
        """Always one watcher."""
        return 1

    async def renew(self, held: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Nothing is ever lost."""
        return set()

    async def acquire(self, candidates: Sequence[uuid.UUID], limit: int) -> list[uuid.UUID]:
        """Every candidate, up to ``limit``."""
        return list(candidates[: max(0, limit)])

    async def release(self, accounts: Iterable[uuid.UUID]) -> None:
        """Nothing to give back."""

    async def leave(self) -> None:
        """Nothing to announce."""

    async def close(self) -> None:
        """Nothing to close."""
