"""One account's push connection: connect, EXAMINE INBOX, NOTIFY, IDLE; reconnect on loss.

::

    connect ──ok──► changed(ALL) ──► IDLE … changed(folder) per EXISTS/EXPUNGE/FETCH/STATUS
       ▲                                   │ connection lost / server restarted / BYE
       └── sleep(back-off, jittered) ◄─────┘
           1 s, 2 s, 4 s … 5 min; a [LIMIT] refusal waits at least LIMIT_RETRY_S;
           a refused login waits AUTH_RETRY_S: an OAuth2 account is marked auth_failed
           at once (with the server's reason), a password one by its next sync; either
           way the supervisor then drops it. A refused refresh grant marks it too.

Every (re)connect queues a sync of the whole account: whatever happened while nobody
listened (a takeover, a restart) is fetched, so nothing is missed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from email_service.errors import BlockedHostError, EmailServiceError, RemoteAuthError
from email_service.mail.imap.idle import PushClient, PushLogin
from email_service.observability import metrics
from email_service.services.push.accounts import WatchedAccount
from email_service.services.push.pending import ALL_FOLDERS

log = logging.getLogger(__name__)
# Reconnect back-off: doubling from BACKOFF_BASE_S, capped, each delay jittered to
# 50-100 % so a restarted server is not hit by every watcher at the same instant.
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
# A server at its per-user connection limit ([LIMIT], Dovecot's mail_max_userip_connections)
# gets this long before we try again: the account's syncs need those connections.
LIMIT_RETRY_S = 60.0
# A refused login is not retried quickly (no lock-out storms); an edit restarts it.
AUTH_RETRY_S = 15 * 60.0
LIMIT_WORDS = ("[LIMIT]", "maximum number of connections")

ChangeSink = Callable[[WatchedAccount, str], None]
LoginFactory = Callable[[WatchedAccount], PushLogin]  # blocking; run in a thread
RefusalSink = Callable[[WatchedAccount, str], None]  # (account, reason); blocking, a thread


@dataclass
class WatchStats:
    """Shared counters of one watcher process (the event loop is single-threaded)."""

    idle: int = 0
    reconnects: int = 0
    connected: set[str] = field(default_factory=set)  # account ids in IDLE


def backoff(attempt: int) -> float:
    """Seconds before reconnect ``attempt`` (0-based), jittered."""
    delay: float = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** min(attempt, 30))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


class AccountWatch:
    """Keeps one account's IDLE connection up until cancelled."""

    def __init__(
        self,
        account: WatchedAccount,
        make_login: LoginFactory,
        changed: ChangeSink,
        renew_seconds: float,
        stats: WatchStats,
        refused: RefusalSink | None = None,
    ) -> None:
        self.account = account
        self.make_login = make_login
        self.refused = refused
        self.changed = changed
        self.renew_seconds = renew_seconds
        self.stats = stats
        self.was_up = False  # the current attempt reached IDLE

    async def run(self) -> None:
        """Connect and listen forever; every failure is followed by a back-off."""
        attempt = 0
        while True:
            self.was_up = False
            try:
                await self._session()  # returns only by raising
            except RemoteAuthError as exc:
                log.warning("push login refused", extra=self._extra(error=exc.message))
                delay = AUTH_RETRY_S
            except (EmailServiceError, OSError, TimeoutError, ValueError) as exc:
                attempt = 0 if self.was_up else attempt  # a drop after IDLE starts afresh
                delay = self._retry_delay(exc, attempt)
                attempt += 1
            self.stats.reconnects += 1
            metrics.count_push_reconnect()
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        login = await asyncio.to_thread(self.make_login, self.account)
        try:
            client = await PushClient.connect(login)
        except RemoteAuthError as exc:
            await self._record_refusal(exc.message)
            raise
        try:
            await client.examine_inbox()
            await client.notify_all()
            self.changed(self.account, ALL_FOLDERS)
            self._mark(connected=True)
            self.was_up = True
            await client.idle(lambda folder: self.changed(self.account, folder), self.renew_seconds)
        finally:
            self._mark(connected=False)
            client.close()

    async def _record_refusal(self, reason: str) -> None:
        if self.refused is None:
            return
        try:
            await asyncio.to_thread(self.refused, self.account, reason)
        except Exception:  # the database away: the account is retried after AUTH_RETRY_S
            log.exception("could not record a refused push login", extra=self._extra())

    def _mark(self, connected: bool) -> None:
        key = str(self.account.id)
        if connected and key not in self.stats.connected:
            self.stats.connected.add(key)
            self.stats.idle += 1
        elif not connected and key in self.stats.connected:
            self.stats.connected.discard(key)
            self.stats.idle -= 1
        metrics.set_push_idle(self.stats.idle)

    def _retry_delay(self, exc: BaseException, attempt: int) -> float:
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        delay = backoff(attempt)
        if isinstance(exc, BlockedHostError):
            delay = AUTH_RETRY_S
        elif any(word in text.lower() for word in (w.lower() for w in LIMIT_WORDS)):
            delay = max(delay, LIMIT_RETRY_S)
        log.info("push connection lost", extra=self._extra(error=text, retry_in=round(delay, 1)))
        return delay

    def _extra(self, **more: object) -> dict[str, object]:
        return {"account_id": str(self.account.id), "tenant_id": self.account.tenant_id, **more}
