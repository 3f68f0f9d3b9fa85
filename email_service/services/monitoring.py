"""What a metrics scrape reads from the store: sync lag per account, the connection pool."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select

from email_service.store.db import Database
from email_service.store.models import Account, SyncState, utcnow
from email_service.store.states import AccountStatus

# One series per account would grow without bound; the most lagging accounts are the ones
# worth a graph, and the maximum covers the rest.
SYNC_LAG_SERIES = 500


@dataclass(frozen=True)
class SyncLag:
    """Seconds since an account's last successful sync (since it was added, if never)."""

    tenant_id: str
    account_id: uuid.UUID
    seconds: float


def sync_lags(
    db: Database, limit: int = SYNC_LAG_SERIES, now: datetime | None = None
) -> list[SyncLag]:
    """The ``limit`` active accounts that waited longest for a successful sync, oldest first."""
    since = func.coalesce(SyncState.last_success_at, Account.created_at)
    query = (
        select(Account.tenant_id, Account.id, SyncState.last_success_at, Account.created_at)
        .outerjoin(SyncState, SyncState.account_id == Account.id)
        .where(Account.status != AccountStatus.DISABLED)
        .order_by(since.asc(), Account.id)
        .limit(limit)
    )
    now = now or utcnow()
    with db.operator_session("metrics: sync lag of the most lagging accounts") as session:
        rows = session.execute(query).all()
    return [
        SyncLag(tenant, account_id, max(0.0, (now - (success or created)).total_seconds()))
        for tenant, account_id, success, created in rows
    ]


@dataclass(frozen=True)
class LagHistogram:
    """Active accounts by sync lag: cumulative counts per upper bound, and the largest lag."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # accounts with lag <= bound, per bound
    total: int
    worst: float


def sync_lag_histogram(
    db: Database, bounds: tuple[float, ...], now: datetime | None = None
) -> LagHistogram:
    """Every active account's lag, counted into ``bounds`` in one query: no account or
    tenant is named, so the numbers may be shown to whoever reads the metrics."""
    now = now or utcnow()
    since = func.coalesce(SyncState.last_success_at, Account.created_at)
    older = [
        func.coalesce(func.sum(case((since < now - timedelta(seconds=b), 1), else_=0)), 0)
        for b in bounds
    ]
    query = (
        select(func.count(), func.min(since), *older)
        .select_from(Account)
        .outerjoin(SyncState, SyncState.account_id == Account.id)
        .where(Account.status != "disabled")
    )
    with db.operator_session("metrics: sync lag histogram over every account") as session:
        total, oldest, *over = session.execute(query).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite gives naive UTC from min()
        oldest = oldest.replace(tzinfo=UTC)
    worst = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return LagHistogram(bounds, tuple(int(total) - int(n) for n in over), int(total), worst)


def pool_counts(db: Database) -> tuple[int, int]:
    """Connections of this process's pools: (checked out, idle); (0, 0) without a pool."""
    in_use = idle = 0
    for engine in db.engines:
        checked_out = getattr(engine.pool, "checkedout", None)
        checked_in = getattr(engine.pool, "checkedin", None)
        if checked_out is not None and checked_in is not None:
            in_use, idle = in_use + int(checked_out()), idle + int(checked_in())
    return in_use, idle
