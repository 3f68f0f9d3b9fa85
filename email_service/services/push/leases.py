"""Which watcher holds which account: leases in Redis, renewed, one holder each.

Each watcher has an id and, per account it watches, a key ``push:lease:<account>`` whose
value is its id, renewed every tick by a script that extends only keys still holding its
id. Watchers also announce themselves in a sorted set scored by when they stop counting
as alive: half a lease after their last heartbeat, on Redis's clock (hosts' clocks may
differ). A lease is free when its key is gone or names a holder that is not alive, and
taking one is a single script (check and ``SET PX`` together), so there is exactly one
holder. A watcher that dies, even by ``kill -9``, stops announcing itself: half a lease
later the others' next tick takes its accounts, well before its keys would expire. A
watcher that is alive but stalled that long loses its accounts the same way and learns
it at its next renewal. The live count gives each watcher its fair share,
``ceil(accounts / watchers)``: one over it lets go of the surplus, one under it takes
free accounts.

Embedded (no Redis), :class:`LocalLeases` holds every account in this process.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis

LEASE_PREFIX = "push:lease:"
WATCHERS_KEY = "push:watchers"
# A watcher is alive for this fraction of the lease after its last heartbeat (a tick is a
# tenth of the lease: five missed heartbeats).
ALIVE_FRACTION = 0.5
# Redis's clock in milliseconds (scripts see one clock whatever host the watcher runs on).
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS[1] the watcher set; ARGV: holder, alive ms. Announces, forgets the dead, counts.
_HEARTBEAT = (
    _NOW_MS
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)
# KEYS[1] the watcher set, KEYS[2..] candidate leases; ARGV: holder, lease ms, limit,
# alive ms. Announces the taker, then takes, in order, up to ARGV[3] leases that are unset
# or held by a watcher not alive.
_TAKE = (
    _NOW_MS
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
local taken = {}
for i = 2, #KEYS do
  if #taken >= tonumber(ARGV[3]) then break end
  local holder = redis.call('GET', KEYS[i])
  local free = not holder
  if holder and holder ~= ARGV[1] then
    local until_ms = redis.call('ZSCORE', KEYS[1], holder)
    free = (not until_ms) or tonumber(until_ms) <= now
  end
  if free then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    table.insert(taken, KEYS[i])
  end
end
return taken
"""
)
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
        self.alive_ms = int(self.lease_ms * ALIVE_FRACTION)
        # host:pid:random: an operator can tell which process holds an account
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._heartbeat = self.client.register_script(_HEARTBEAT)
        self._take = self.client.register_script(_TAKE)

    async def heartbeat(self) -> int:
        """Announce this watcher as alive for ``alive_ms``; forget the dead; count the rest."""
        count = await self._heartbeat(keys=[WATCHERS_KEY], args=[self.holder, self.alive_ms])
        return int(count)

    async def renew(self, held: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """One script call extends every lease still ours."""
        if not held:
            return set()
        by_key = {lease_key(a): a for a in held}
        lost = await self._renew(keys=list(by_key), args=[self.holder, self.lease_ms])
        return {by_key[k.decode() if isinstance(k, bytes) else k] for k in lost}

    async def acquire(self, candidates: Sequence[uuid.UUID], limit: int) -> list[uuid.UUID]:
        """One script announces this watcher and takes up to ``limit`` leases that are unset
        or a dead watcher's."""
        if limit <= 0 or not candidates:
            return []
        by_key = {lease_key(a): a for a in candidates}
        taken = await self._take(
            keys=[WATCHERS_KEY, *by_key], args=[self.holder, self.lease_ms, limit, self.alive_ms]
        )
        return [by_key[k.decode() if isinstance(k, bytes) else k] for k in taken]

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
