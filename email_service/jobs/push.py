"""The watcher process (`email-service watch`) and the embedded watcher thread."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from email_service.errors import ConfigError
from email_service.observability import metrics
from email_service.services.push.leases import LocalLeases, RedisLeases
from email_service.services.push.pending import async_pending_for, push_redis_url
from email_service.services.push.supervisor import Supervisor
from email_service.services.runtime import Runtime

log = logging.getLogger(__name__)


def push_enabled(runtime: Runtime) -> bool:
    """ENABLE_IMAP_PUSH, and there is a sync to push to."""
    settings = runtime.settings
    return settings.enable_imap_push and settings.enable_imap_sync


def _redis(runtime: Runtime) -> str | None:
    return push_redis_url(runtime.settings.redis_url, runtime.settings.broker_url)


async def _serve(runtime: Runtime, stop: asyncio.Event, leases: LocalLeases | RedisLeases) -> None:
    supervisor = Supervisor(runtime, leases, async_pending_for(_redis(runtime)))
    try:
        await supervisor.run(stop)
    finally:
        await leases.close()


def run_watcher(runtime: Runtime) -> None:
    """Watch this process's share of the accounts until SIGTERM/SIGINT (needs Redis)."""
    url = _redis(runtime)
    if url is None:
        raise ConfigError(
            "email-service watch needs REDIS_URL (embedded, the service process watches)"
        )
    if runtime.settings.watch_metrics_port:
        metrics.serve("0.0.0.0", runtime.settings.watch_metrics_port)  # noqa: S104
    leases = RedisLeases(url, runtime.settings.watch_lease_seconds)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("watcher started", extra={"holder": leases.holder})
        await _serve(runtime, stop, leases)

    asyncio.run(main())


class EmbeddedWatcher:
    """The watcher on a daemon thread of the service process; ``stop()`` ends it."""

    def __init__(self, runtime: Runtime, leases: LocalLeases | RedisLeases) -> None:
        self.runtime = runtime
        self.leases = leases
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="imap-push", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.ready.set()
        await _serve(self.runtime, self.stopping, self.leases)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connections, give the leases back, end the thread."""
        self.ready.wait(timeout)
        if self.loop is not None and self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout)


def start_embedded(runtime: Runtime) -> EmbeddedWatcher | None:
    """In the service process (no watcher processes): watch the accounts on a thread."""
    if not push_enabled(runtime):
        return None
    url = _redis(runtime)
    leases = RedisLeases(url, runtime.settings.watch_lease_seconds) if url else LocalLeases()
    watcher = EmbeddedWatcher(runtime, leases)
    watcher.thread.start()
    return watcher
