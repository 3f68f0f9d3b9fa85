"""Revoked API tokens, by ``jti``: Redis when ``REDIS_URL`` is set, else the database.

A revocation is kept for ``JWT_MAX_TTL_SECONDS`` plus the clock leeway: no token the
service accepts lives longer (``exp - iat`` is capped), so after that the entry can go.
Every authenticated request asks :meth:`Denylist.is_revoked`, also for tokens in the
verified-token cache. If Redis does not answer, the check fails open (logged), like the
rate limits: the API stays up, and a revoked token may pass while Redis is down.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

import redis
from sqlalchemy import delete, select

from email_service.config import Settings
from email_service.store.db import Database
from email_service.store.models import RevokedToken

KEY_PREFIX = "email-service:revoked:"
# A revocation check must not hang a request thread when Redis stalls.
REDIS_TIMEOUT_S = 1.0
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


class RedisDenylist:
    """One key per jti, expiring when no token can carry it any more."""

    def __init__(self, url: str, keep: timedelta) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.keep = keep

    def revoke(self, jti: str) -> None:
        """SET with an expiry; raises if Redis is unreachable (the operator must know)."""
        self.client.set(KEY_PREFIX + jti, "1", ex=self.keep)

    def is_revoked(self, jti: str) -> bool:
        """EXISTS; on Redis trouble, False (fail open, logged)."""
        try:
            return bool(self.client.exists(KEY_PREFIX + jti))
        except redis.RedisError:
            log.error("token revocation check skipped: Redis unavailable", exc_info=True)
            return False


def denylist(settings: Settings, db: Database) -> Denylist:
    """The deployment's denylist: Redis when REDIS_URL is set, else the database."""
    keep = timedelta(seconds=settings.jwt_max_ttl_seconds + settings.jwt_leeway)
    if settings.redis_url:
        return RedisDenylist(settings.redis_url, keep)
    return DatabaseDenylist(db, keep)
