"""One refresh of an account's tokens at a time, across every process.

With Redis (REDIS_URL): ``SET oauth-refresh:<account> <owner> NX PX <lease>`` and a
compare-and-delete release. Without (the embedded default): a lease column on the
account row, taken by one conditional UPDATE, which SQLite and PostgreSQL both run
atomically. A holder that dies frees the lock when its lease ends.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Protocol

import redis
from sqlalchemy import or_, update

from email_service.store.db import Database
from email_service.store.models import Account, utcnow

# Lua: delete the key only if this owner still holds it.
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
KEY_PREFIX = "oauth-refresh:"


class RefreshLock(Protocol):
    """acquire -> True if this owner now holds the account's lock; release gives it back."""

    def acquire(self, account_id: uuid.UUID, owner: str) -> bool: ...

    def release(self, account_id: uuid.UUID, owner: str) -> None: ...


class RedisRefreshLock:
    """The lock as a Redis key with a lease."""

    def __init__(self, url: str, lease_seconds: int) -> None:
        self._redis = redis.Redis.from_url(url)
        self._lease_ms = lease_seconds * 1000

    def acquire(self, account_id: uuid.UUID, owner: str) -> bool:
        """SET NX PX: only one owner at a time."""
        key = KEY_PREFIX + str(account_id)
        return bool(self._redis.set(key, owner, nx=True, px=self._lease_ms))

    def release(self, account_id: uuid.UUID, owner: str) -> None:
        """Delete the key if it is still ours."""
        self._redis.eval(_RELEASE, 1, KEY_PREFIX + str(account_id), owner)


class DatabaseRefreshLock:
    """The lock as a lease column on the account row."""

    def __init__(self, db: Database, lease_seconds: int) -> None:
        self._db = db
        self._lease = timedelta(seconds=lease_seconds)

    def acquire(self, account_id: uuid.UUID, owner: str) -> bool:
        """Take the lease if it is free or expired (one UPDATE: atomic on both backends)."""
        now = utcnow()
        with self._db.session() as session:
            result = session.execute(
                update(Account)
                .where(
                    Account.id == account_id,
                    or_(Account.oauth_refresh_until.is_(None), Account.oauth_refresh_until < now),
                )
                .values(oauth_refresh_until=now + self._lease, updated_at=Account.updated_at)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0) == 1)

    def release(self, account_id: uuid.UUID, owner: str) -> None:
        """Free the lease."""
        with self._db.session() as session:
            session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(oauth_refresh_until=None, updated_at=Account.updated_at)
                .execution_options(synchronize_session=False)
            )
