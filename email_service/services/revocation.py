"""Revoked API tokens, by ``jti``: Redis when ``REDIS_URL`` is set, else the database.

A revocation is kept for ``JWT_MAX_TTL_SECONDS`` plus the clock leeway: no token the
service accepts lives longer (``exp - iat`` is capped), so after that the entry can go.
Every authenticated request asks :meth:`Denylist.is_revoked`, also for tokens in the
verified-token cache. With Redis, each process asks Redis about a ``jti`` at most once per
:data:`RECHECK_S` and reuses a "not revoked" answer meanwhile: a revoked token is refused
by every process at most :data:`RECHECK_S` after ``token --revoke`` returns (at once in
the process that revoked it), and a client sending its token a thousand times a second
costs one round trip a second instead of a thousand. A "revoked" answer is kept: a
revoked ``jti`` never becomes valid again. If Redis does not answer, the check fails open
(logged, nothing remembered), like the rate limits: the API stays up, and a revoked token
may pass while Redis is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis
from sqlalchemy import delete, select

from email_service.config import Settings
from email_service.store.db import Database
from email_service.store.models import RevokedToken

KEY_PREFIX = "email-service:revoked:"
# A revocation check must not hang a request thread when Redis stalls.
REDIS_TIMEOUT_S = 1.0
# How long a process reuses Redis' "not revoked" for a jti: the longest a revoked token
# can still pass anywhere. A second is below what a person revoking a token notices.
RECHECK_S = 1.0
# jtis remembered per process (each answer kept is about 200 bytes); oldest dropped first.
REMEMBERED = 4096
log = logging.getLogger(__name__)


class Denylist(Protocol):
    """Where revoked jtis live."""

    def revoke(self, jti: str) -> None:
        """Refuse tokens carrying ``jti`` from now on."""

    def is_revoked(self, jti: str) -> bool:
        """True if ``jti`` was revoked (and could still be in a valid token)."""


class DatabaseDenylist:
    """The ``revoked_token`` table (the embedded default)."""

    def __init__(self, db: Database, keep: timedelta) -> None:
        self.db = db
        self.keep = keep

    def revoke(self, jti: str) -> None:
        """Insert (or extend) the row, and drop rows no token can need any more."""
        now = datetime.now(UTC)
        with self.db.session() as session:
            session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
            row = session.get(RevokedToken, jti)
            if row is None:
                session.add(RevokedToken(jti=jti, revoked_at=now, expires_at=now + self.keep))
            else:
                row.expires_at = now + self.keep

    def is_revoked(self, jti: str) -> bool:
        """One primary-key lookup."""
        with self.db.reading() as session:
            found = session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti))
        return found is not None


class _Answers:
    """Per-process answers by jti, bounded (oldest dropped first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.passed: dict[str, float] = {}  # jti -> when Redis last said "not revoked"
        self.refused: dict[str, None] = {}  # jtis Redis said were revoked (final)
        self.lock = threading.Lock()

    def remember(self, jti: str, revoked: bool, now: float) -> None:
        with self.lock:
            if revoked:
                self.passed.pop(jti, None)
                _bounded_put(self.refused, jti, None, self.size)
            else:
                self.passed.pop(jti, None)  # re-inserted last: the newest is dropped last
                _bounded_put(self.passed, jti, now, self.size)


def _bounded_put(entries: dict[str, Any], key: str, value: Any, size: int) -> None:
    while len(entries) >= size:
        del entries[next(iter(entries))]
    entries[key] = value


class RedisDenylist:
    """One key per jti, expiring when no token can carry it any more; answers reused for
    :data:`RECHECK_S` per process (see the module docstring)."""

    def __init__(
        self, url: str, keep: timedelta, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.keep = keep
        self.clock = clock
        self.answers = _Answers(REMEMBERED)

    def revoke(self, jti: str) -> None:
        """SET with an expiry; raises if Redis is unreachable (the operator must know)."""
        self.client.set(KEY_PREFIX + jti, "1", ex=self.keep)
        self.answers.remember(jti, True, self.clock())

    def is_revoked(self, jti: str) -> bool:
        """A recent answer for ``jti``, else EXISTS; on Redis trouble, False (fail open, logged)."""
        if jti in self.answers.refused:
            return True
        now = self.clock()
        checked = self.answers.passed.get(jti)
        if checked is not None and now - checked < RECHECK_S:
            return False
        try:
            revoked = bool(self.client.exists(KEY_PREFIX + jti))
        except redis.RedisError:
            log.error("token revocation check skipped: Redis unavailable", exc_info=True)
            return False
        self.answers.remember(jti, revoked, now)
        return revoked


def denylist(settings: Settings, db: Database) -> Denylist:
    """The deployment's denylist: Redis when REDIS_URL is set, else the database."""
    keep = timedelta(seconds=settings.jwt_max_ttl_seconds + settings.jwt_leeway)
    if settings.redis_url:
        return RedisDenylist(settings.redis_url, keep)
    return DatabaseDenylist(db, keep)
