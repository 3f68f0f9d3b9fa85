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


def start_embedded(runtime: Runtime) -> threading.Thread | None:
    """In the service process (no watcher processes): watch every account on a thread."""
    if not push_enabled(runtime):
        return None
    url = _redis(runtime)
    leases = RedisLeases(url, runtime.settings.watch_lease_seconds) if url else LocalLeases()
    thread = threading.Thread(
        target=lambda: asyncio.run(_serve(runtime, asyncio.Event(), leases)),
        name="imap-push",
        daemon=True,
    )
    thread.start()
    return thread
