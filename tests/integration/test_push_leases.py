"""Watcher leases on a real (private) Redis: one holder, renewal, expiry, fair share."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from email_service.services.push import supervisor as module
from email_service.services.push.accounts import WatchedAccount
from email_service.services.push.leases import RedisLeases, fair_share, lease_key
from email_service.services.push.pending import (
    AsyncMemoryPending,
    RedisPending,
    key,
    memory_pending,
)
from tests.support import aio

pytestmark = [pytest.mark.redis]
ACCOUNTS = [uuid.uuid4() for _ in range(10)]


@pytest.fixture
def url(redis_server: Any) -> str:
    redis.Redis.from_url(redis_server.url).flushdb()
    return str(redis_server.url)


def test_each_account_has_exactly_one_holder(url: str) -> None:
    async def scenario() -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        a, b = RedisLeases(url, 30), RedisLeases(url, 30)
        got_a, got_b = await asyncio.gather(a.acquire(ACCOUNTS, 10), b.acquire(ACCOUNTS, 10))
        await a.close()
        await b.close()
        return got_a, got_b

    got_a, got_b = aio.run(scenario())
    assert sorted(got_a + got_b) == sorted(ACCOUNTS)
    assert not set(got_a) & set(got_b)


def test_renewal_keeps_leases_and_reports_lost_ones(url: str) -> None:
    async def scenario() -> tuple[set[uuid.UUID], list[uuid.UUID], set[uuid.UUID]]:
        a, b = RedisLeases(url, 1), RedisLeases(url, 30)
        await a.heartbeat()
        await b.heartbeat()
        held = await a.acquire(ACCOUNTS[:4], 4)
        for _ in range(3):  # a ticks every 0.2 s: alive, its leases never expire
            await asyncio.sleep(0.2)
            await a.heartbeat()
            assert await a.renew(held) == set()
        taken_by_b = await b.acquire(ACCOUNTS[:4], 4)
        await asyncio.sleep(1.2)  # a stops ticking: it is no longer alive, its leases expire
        await b.heartbeat()
        taken_after = await b.acquire(ACCOUNTS[:4], 4)  # ... and b takes them
        lost = await a.renew(held)
        await a.close()
        await b.close()
        return set(taken_by_b), taken_after, lost

    taken_before, taken_after, lost = aio.run(scenario())
    assert taken_before == set()
    assert sorted(taken_after) == sorted(ACCOUNTS[:4])
    assert lost == set(ACCOUNTS[:4])
    client = redis.Redis.from_url(url)
    assert all(client.pttl(lease_key(a)) > 1000 for a in ACCOUNTS[:4])  # b's 30 s leases


def test_a_dead_watchers_leases_are_taken_before_they_expire(url: str) -> None:
    """Half a lease after a holder's last heartbeat its accounts move, keys unexpired."""

    async def scenario() -> tuple[list[uuid.UUID], list[uuid.UUID], list[int], set[uuid.UUID]]:
        dead, survivor = RedisLeases(url, 4), RedisLeases(url, 30)
        await dead.heartbeat()
        await survivor.heartbeat()
        held = await dead.acquire(ACCOUNTS, 10)
        await asyncio.sleep(1.0)  # dead is alive for 2 s after its heartbeat
        await survivor.heartbeat()
        while_alive = await survivor.acquire(ACCOUNTS, 10)
        await asyncio.sleep(1.3)  # 2.3 s since dead's heartbeat; its keys have 1.7 s left
        client = redis.Redis.from_url(url)
        left_ms = [int(client.pttl(lease_key(a))) for a in held]
        assert await survivor.heartbeat() == 1  # the dead one is forgotten
        taken = await survivor.acquire(ACCOUNTS, 10)
        lost = await dead.renew(held)
        await dead.close()
        await survivor.close()
        return while_alive, taken, left_ms, lost

    while_alive, taken, left_ms, lost = aio.run(scenario())
    assert while_alive == []
    assert all(ms > 0 for ms in left_ms)  # still set: taken over, not expired
    assert sorted(taken) == sorted(ACCOUNTS)
    assert lost == set(ACCOUNTS)


def test_release_only_frees_own_leases_and_watchers_are_counted(url: str) -> None:
    async def scenario() -> tuple[int, int, list[uuid.UUID]]:
        a, b = RedisLeases(url, 30), RedisLeases(url, 30)
        await a.heartbeat()
        both = await b.heartbeat()
        held = await a.acquire(ACCOUNTS, 5)
        await b.release(held)  # not b's: nothing happens
        assert await b.acquire(held, 5) == []
        await a.release(held)
        await a.leave()
        alone = await b.heartbeat()
        taken = await b.acquire(held, 5)
        await a.close()
        await b.close()
        return both, alone, taken

    both, alone, taken = aio.run(scenario())
    assert (both, alone) == (2, 1)
    assert len(taken) == 5
    assert fair_share(1000, 3) == 334 and fair_share(0, 0) == 0


def test_pending_marks_coalesce_until_taken(url: str) -> None:
    marks = RedisPending(url)
    account = uuid.uuid4()
    now = time.time()
    assert marks.mark(account, "INBOX", now)
    assert not marks.mark(account, "INBOX", now + 1)  # coalesced into the first
    assert marks.mark(account, "Other", now)  # another folder: its own mark
    assert marks.take(account, "INBOX") == pytest.approx(now)
    assert marks.take(account, "INBOX") is None
    assert marks.mark(account, "INBOX", now + 2)  # after the job took it: queued again
    assert redis.Redis.from_url(url).ttl(key(account, "INBOX")) > 0


def test_a_database_outage_costs_a_watcher_none_of_its_accounts(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher announces itself and renews its leases before it reads the account list:
    with the database away for longer than a lease, it keeps every account it holds."""

    lease_s = 3
    now = datetime.now(UTC)
    accounts = {
        a: WatchedAccount(a, "t", "127.0.0.1", 143, "none", "u", "password", now)
        for a in ACCOUNTS[:3]
    }
    database = {"up": True}

    def active(_runtime: Any) -> dict[uuid.UUID, WatchedAccount]:
        if not database["up"]:
            raise ConnectionError("the database is away")
        return accounts

    class Idle:  # a connection that stays up (no IMAP server in this test)
        def __init__(self, *_args: Any) -> None:
            pass

        async def run(self) -> None:
            await asyncio.Event().wait()

    monkeypatch.setattr(module, "active_accounts", active)
    monkeypatch.setattr(module, "AccountWatch", Idle)
    monkeypatch.setattr(module, "ACCOUNTS_REFRESH_S", 0.0)  # read the list every tick
    settings = SimpleNamespace(watch_lease_seconds=lease_s, imap_idle_renew_seconds=1500)

    async def scenario() -> tuple[int, list[uuid.UUID]]:
        leases = RedisLeases(url, lease_s)
        runtime: Any = SimpleNamespace(settings=settings, queue=None)
        watcher = module.Supervisor(
            runtime, leases, AsyncMemoryPending(memory_pending()), lambda *_: None
        )
        await watcher.tick()
        held = len(watcher.watches)
        database["up"] = False
        deadline = asyncio.get_running_loop().time() + 2 * lease_s
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(ConnectionError):
                await watcher.tick()
            await asyncio.sleep(0.3)
        other = RedisLeases(url, 30)
        await other.heartbeat()
        stolen = await other.acquire(list(accounts), 3)
        watcher._stop(list(watcher.watches))
        await leases.close()
        await other.close()
        return held, stolen

    held, stolen = aio.run(scenario())
    assert held == 3
    assert stolen == []  # still the first watcher's, twice a lease later
    client = redis.Redis.from_url(url)
    assert all(client.get(lease_key(a)) is not None for a in accounts)
