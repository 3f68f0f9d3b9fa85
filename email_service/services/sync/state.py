"""Per-account sync bookkeeping: the lock, the state the status endpoint shows, progress.

States::

    idle ──trigger──► queued ──worker takes lock──► running ──► ok
                        ▲                              │  └───► error (retried with back-off)
                        └──────── next trigger ────────┘  └───► auth_failed (no retry until
                                                                 the account changes)

The lock is a row update with an expiry, so it works the same on PostgreSQL and SQLite
and a worker that dies mid-sync releases it by letting it expire.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session

from email_service.services.events import record as announce
from email_service.store.change_log import Op
from email_service.store.db import Database, insert_into
from email_service.store.models import Account, SyncState, utcnow
from email_service.store.states import SyncRunState
from email_service.store.tenancy import check_tenant_row, not_found

# Default lock lifetime (SYNC_LOCK_TTL_SECONDS); a running sync renews it every second.
LOCK_TTL = timedelta(minutes=5)


@dataclass(frozen=True)
class SyncStatus:
    """What GET /api/sync/status shows."""

    account_id: uuid.UUID
    state: str
    job_id: str | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    failures: int
    folders: dict[str, dict[str, float]]
    messages_synced: int
    bytes_synced: int
    percent: float  # of the messages of every folder this run has listed


def _new_row(account_id: uuid.UUID, tenant_id: str, **values: Any) -> dict[str, Any]:
    """A status row's values with nothing synced yet, and ``values``."""
    return {
        "account_id": account_id,
        "tenant_id": tenant_id,
        "progress": {},
        "failures": 0,
        "messages_synced": 0,
        "bytes_synced": 0,
        **values,
    }


def _insert_missing(session: Session, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert the status rows not there yet; the accounts whose row this made. A row
    another transaction makes at the same time is waited for and left to it (the
    caller reads it after), never a duplicate-key error."""
    made = session.execute(
        insert_into(session, SyncState)
        .on_conflict_do_nothing(index_elements=["account_id"])
        .returning(SyncState.account_id),
        rows,
    )
    return set(made.scalars())


def _row(session: Session, tenant_id: str, account_id: uuid.UUID) -> SyncState:
    """The account's status row, made if missing; NotFoundError unless it is the tenant's.
    One statement when the row exists (none when the session holds it already): a status
    row is the tenant's exactly when its account is."""
    row = session.get(SyncState, account_id)
    if row is not None and row.tenant_id == tenant_id:
        return row
    check_tenant_row(session, Account, tenant_id, account_id, account_id=str(account_id))
    if row is None:
        if _insert_missing(session, [_new_row(account_id, tenant_id, state=SyncRunState.IDLE)]):
            announce.sync_changed(session, tenant_id, account_id, None, Op.CREATED)
        row = session.get(SyncState, account_id)
        if row is None:  # the account was deleted meanwhile, and its row with it
            raise not_found(Account, account_id=str(account_id))
    return row


def status(session: Session, tenant_id: str, account_id: uuid.UUID) -> SyncStatus:
    """The account's sync status (idle if it never synced)."""
    return _status_of(_row(session, tenant_id, account_id))


def read_status(db: Database, tenant_id: str, account_id: uuid.UUID) -> SyncStatus:
    """:func:`status` in one round trip (a read outside a transaction) when the account
    has a status row; else in a transaction that makes the row."""
    with db.reading() as session:
        row = session.get(SyncState, account_id)
        if row is not None and row.tenant_id == tenant_id:
            return _status_of(row)
    with db.session() as session:
        return status(session, tenant_id, account_id)


def _status_of(row: SyncState) -> SyncStatus:
    listed: dict[str, dict[str, int]] = dict(row.progress.get("folders", {}))
    folders = {
        name: {**p, "percent": _percent(p["done"], p["total"], row.state == SyncRunState.OK)}
        for name, p in listed.items()
    }
    done = sum(p["done"] for p in listed.values())
    total = sum(p["total"] for p in listed.values())
    return SyncStatus(
        account_id=row.account_id,
        state=row.state,
        job_id=row.job_id,
        queued_at=row.queued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        failures=row.failures,
        folders=folders,
        messages_synced=row.messages_synced,
        bytes_synced=row.bytes_synced,
        percent=_percent(done, total, row.state == SyncRunState.OK),
    )


def _percent(done: int, total: int, finished: bool) -> float:
    """Done of total as a percentage, one decimal; an empty total is done once finished."""
    if total <= 0:
        return 100.0 if finished else 0.0
    return round(min(done, total) * 100 / total, 1)


def is_busy(
    session: Session, tenant_id: str, account_id: uuid.UUID, ttl: timedelta = LOCK_TTL
) -> SyncStatus | None:
    """The current status if a sync is queued or running under a live lock, else None."""
    row = _row(session, tenant_id, account_id)
    now = utcnow()
    live_lock = row.lock_expires_at is not None and row.lock_expires_at > now
    if row.state == SyncRunState.RUNNING and live_lock:
        return status(session, tenant_id, account_id)
    if row.state == SyncRunState.QUEUED and row.queued_at and now - row.queued_at < ttl:
        return status(session, tenant_id, account_id)
    return None


def mark_queued(session: Session, tenant_id: str, account_id: uuid.UUID, job_id: str) -> None:
    """Record that a sync job was enqueued."""
    row = _row(session, tenant_id, account_id)
    row.state, row.job_id, row.queued_at = SyncRunState.QUEUED, job_id, utcnow()
    announce.sync_changed(session, tenant_id, account_id, "queued")


def mark_many_queued(session: Session, jobs: list[tuple[uuid.UUID, str, str]]) -> None:
    """Record that sync jobs (account, tenant, job id) are being enqueued, in bulk."""
    if not jobs:
        return
    now = utcnow()
    have = set(
        session.scalars(
            select(SyncState.account_id).where(SyncState.account_id.in_([a for a, _, _ in jobs]))
        )
    )
    fresh = [
        _new_row(account_id, tenant_id, state=SyncRunState.QUEUED, job_id=job_id, queued_at=now)
        for account_id, tenant_id, job_id in jobs
        if account_id not in have
    ]
    made = _insert_missing(session, fresh) if fresh else set()
    for account_id, tenant_id, _job in jobs:
        op = Op.CREATED if account_id in made else Op.UPDATED
        announce.sync_changed(session, tenant_id, account_id, "queued", op)
    known = [  # rows there before, or made meanwhile by another transaction
        {"account_id": a, "job_id": j, "state": SyncRunState.QUEUED, "queued_at": now}
        for a, _, j in jobs
        if a not in made
    ]
    if known:
        session.execute(update(SyncState), known)


def start(
    session: Session, tenant_id: str, account_id: uuid.UUID, owner: str, ttl: timedelta = LOCK_TTL
) -> bool:
    """Take the tenant's account's lock unless a live one is held, creating its status row
    first if it has none (NotFoundError for no such account): one statement when the row
    exists. In the caller's transaction, which must commit before the run goes on."""
    if _take(session, tenant_id, account_id, owner, ttl):
        return True
    _row(session, tenant_id, account_id)  # missing: made now; or held by a live lock
    return _take(session, tenant_id, account_id, owner, ttl)


def _take(
    session: Session, tenant_id: str, account_id: uuid.UUID, owner: str, ttl: timedelta
) -> bool:
    now = utcnow()
    result = session.execute(
        update(SyncState)
        .where(
            SyncState.account_id == account_id,
            SyncState.tenant_id == tenant_id,
            or_(
                SyncState.lock_owner.is_(None),
                SyncState.lock_expires_at < now,
                SyncState.lock_owner == owner,
            ),
        )
        .values(
            lock_owner=owner,
            lock_expires_at=now + ttl,
            # The job a trigger handed out keeps its name while this run serves it; else
            # the status names this run (a pushed folder sync, a CLI run).
            job_id=case((SyncState.state == SyncRunState.QUEUED, SyncState.job_id), else_=owner),
            state=SyncRunState.RUNNING,
            started_at=now,
            finished_at=None,
            progress={},
        )
        .returning(SyncState.tenant_id)
        .execution_options(synchronize_session=False)
    )
    taken = result.scalar()
    if taken is not None:
        announce.sync_changed(session, taken, account_id, "started")
    return taken is not None


def heartbeat(
    session: Session,
    account_id: uuid.UUID,
    owner: str,
    progress: dict[str, Any],
    messages: int,
    size: int,
    ttl: timedelta = LOCK_TTL,
) -> None:
    """Extend the lock and save progress (in the caller's transaction)."""
    tenant_id = session.scalar(
        update(SyncState)
        .where(SyncState.account_id == account_id, SyncState.lock_owner == owner)
        .values(
            lock_expires_at=utcnow() + ttl,
            progress=progress,
            messages_synced=messages,
            bytes_synced=size,
        )
        .returning(SyncState.tenant_id)
    )
    if tenant_id is not None:
        announce.sync_changed(session, tenant_id, account_id, "progress")


def release(
    session: Session,
    account_id: uuid.UUID,
    owner: str,
    state: str,
    error: str | None = None,
    commit: bool = True,
) -> None:
    """Drop the lock and record how the run ended (one statement); commits unless told not."""
    now = utcnow()
    ok = state == SyncRunState.OK
    ended = session.execute(
        update(SyncState)
        .where(SyncState.account_id == account_id, SyncState.lock_owner == owner)
        .values(
            lock_owner=None,
            lock_expires_at=None,
            state=state,
            finished_at=now,
            last_error=error,
            last_success_at=now if ok else SyncState.last_success_at,
            failures=0 if ok else SyncState.failures + 1,
        )
        .returning(SyncState.tenant_id)
        .execution_options(synchronize_session=False)
    ).first()
    if ended is not None:
        announce.sync_ended(session, ended.tenant_id, account_id, state)
    if commit:
        session.commit()
