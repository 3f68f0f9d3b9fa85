"""The loop of one watcher process: leases, fair share, one AccountWatch per held account.

Every tick (a tenth of the lease, at least a second) the supervisor announces itself,
renews its leases in one Redis call, drops the accounts it lost, deleted, disabled or
auth_failed, restarts those whose login was edited, and moves toward its fair share: it
lets go of its surplus or takes free accounts. Changes the connections report go through
one dispatcher task: mark (coalesce), then queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from email_service.observability import metrics
from email_service.services.push.accounts import (
    WatchedAccount,
    active_accounts,
    login_for,
    login_refused,
)
from email_service.services.push.leases import Leases, fair_share
from email_service.services.push.pending import AsyncPending
from email_service.services.push.watch import AccountWatch, WatchStats
from email_service.services.runtime import Runtime

log = logging.getLogger(__name__)
FOLDER_SYNC_TASK = "sync_imap_folder"
# The account list is read again this often (new, deleted, disabled or edited accounts).
ACCOUNTS_REFRESH_S = 10.0
# Ticks per lease: renewal well before expiry, and a dead watcher's accounts are taken
# over at most one tick after its leases expired.
TICKS_PER_LEASE = 10

# Changes reported within this window are queued together, one per account and folder
# (one server action can answer with several responses: EXISTS, then FETCH FLAGS).
BURST_S = 0.02

QueueSync = Callable[[WatchedAccount, str], None]  # blocking: runs on the enqueue thread


def queue_folder_sync(runtime: Runtime) -> QueueSync:
    """Queue ``sync_imap_folder`` on the runtime's job queue."""

    def enqueue(account: WatchedAccount, folder: str) -> None:
        assert runtime.queue is not None, "no job queue wired"
        runtime.queue.enqueue(
            FOLDER_SYNC_TASK,
            uuid.uuid4().hex,
            account_id=str(account.id),
            tenant_id=account.tenant_id,
            folder=folder,
        )

    return enqueue


class Supervisor:
    """Holds this process's share of the accounts; see the module docstring."""

    def __init__(
        self,
        runtime: Runtime,
        leases: Leases,
        pending: AsyncPending,
        queue_sync: QueueSync | None = None,
    ) -> None:
        self.runtime = runtime
        self.leases = leases
        self.pending = pending
        self.queue_sync = queue_sync or queue_folder_sync(runtime)
        self.tick_seconds = max(1.0, runtime.settings.watch_lease_seconds / TICKS_PER_LEASE)
        self.stats = WatchStats()
        self.accounts: dict[uuid.UUID, WatchedAccount] = {}
        self.watches: dict[uuid.UUID, tuple[WatchedAccount, asyncio.Task[None]]] = {}
        self.changes: asyncio.Queue[tuple[WatchedAccount, str, float]] = asyncio.Queue()
        self._enqueuer = ThreadPoolExecutor(1, thread_name_prefix="push-enqueue")
        self._refreshed = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set, then close every connection and give leases back."""
        dispatcher = asyncio.create_task(self._dispatch())
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:  # Redis or the database away: keep what we hold, retry
                    log.exception("watcher tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_seconds)
        finally:
            dispatcher.cancel()
            await self._shutdown()

    async def tick(self) -> None:
        """One round: heartbeat and renewal first (Redis only: a slow or absent database
        never costs this watcher its accounts), then the account list, fair share, metrics."""
        live = await self.leases.heartbeat()
        lost = await self.leases.renew(list(self.watches))
        self._stop(lost)
        now = time.monotonic()
        if not self._refreshed or now - self._refreshed >= ACCOUNTS_REFRESH_S:
            self.accounts = await asyncio.to_thread(active_accounts, self.runtime)
            self._refreshed = now
        await self._drop_stale()
        target = fair_share(len(self.accounts), live)
        held = len(self.watches)
        if held > target:
            surplus = random.sample(list(self.watches), held - target)
            self._stop(surplus)
            await self.leases.release(surplus)
        elif held < target:
            free = [a for a in self.accounts if a not in self.watches]
            random.shuffle(free)  # watchers starting together do not race for the same ones
            for account_id in await self.leases.acquire(free, target - held):
                self._start(self.accounts[account_id])
        metrics.set_push(len(self.watches), self.stats.idle)

    async def _drop_stale(self) -> None:
        """Stop watching deleted, disabled or auth_failed accounts; restart those whose login
        was edited (a token refresh is no edit: see WatchedAccount)."""
        gone = [a for a in self.watches if a not in self.accounts]
        self._stop(gone)
        await self.leases.release(gone)
        for account_id, (account, _task) in list(self.watches.items()):
            if self.accounts[account_id] != account:
                self._stop([account_id])
                self._start(self.accounts[account_id])

    def _start(self, account: WatchedAccount) -> None:
        watch = AccountWatch(
            account,
            lambda a: login_for(self.runtime, a),
            self._changed,
            self.runtime.settings.imap_idle_renew_seconds,
            self.stats,
            lambda a, reason: login_refused(self.runtime, a, reason),
        )
        self.watches[account.id] = (account, asyncio.create_task(watch.run()))

    def _stop(self, accounts: list[uuid.UUID] | set[uuid.UUID]) -> None:
        for account_id in accounts:
            found = self.watches.pop(account_id, None)
            if found is not None:
                found[1].cancel()

    def _changed(self, account: WatchedAccount, folder: str) -> None:
        self.changes.put_nowait((account, folder, time.time()))

    async def _dispatch(self) -> None:
        """Mark each change's (account, folder); queue a sync only if the mark is new."""
        loop = asyncio.get_running_loop()
        while True:
            first = await self.changes.get()
            await asyncio.sleep(BURST_S)
            burst = {(first[0].id, first[1]): first}
            while not self.changes.empty():
                change = self.changes.get_nowait()
                burst.setdefault((change[0].id, change[1]), change)  # keep the earliest time
            for account, folder, at in burst.values():
                try:
                    if await self.pending.mark(account.id, folder, at):
                        await loop.run_in_executor(self._enqueuer, self.queue_sync, account, folder)
                except Exception:
                    log.exception("could not queue a pushed change", extra={"folder": folder})

    async def _shutdown(self) -> None:
        tasks = [task for _account, task in self.watches.values()]
        held = list(self.watches)
        self._stop(held)
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.leases.release(held)
            await self.leases.leave()
        except Exception:  # noqa: BLE001 - whatever it was, the leases expire on their own
            log.warning("could not release leases on shutdown")
        metrics.set_push(0, 0)
        self._enqueuer.shutdown(wait=False)
