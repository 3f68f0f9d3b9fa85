"""Triggering syncs: one at a time per account, queued only after the commit."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select

from email_service.errors import FeatureDisabledError
from email_service.services.runtime import Runtime
from email_service.services.sync import state as sync_state
from email_service.services.sync.ends import RECHECK_S, ends_for
from email_service.store.models import Account, SyncState, utcnow
from email_service.store.states import AccountStatus, SyncRunState

SYNC_TASK = "sync_imap_account"
# States a run ends in: a trigger that waits returns when its job reaches one.
ENDED = frozenset({SyncRunState.OK, SyncRunState.ERROR, SyncRunState.AUTH_FAILED})


@dataclass(frozen=True)
class Trigger:
    """The answer to a trigger: the job that will (or already does) sync the account."""

    job_id: str
    state: str
    already_running: bool


def require_sync_enabled(runtime: Runtime) -> None:
    """FeatureDisabledError unless ENABLE_IMAP_SYNC."""
    if not runtime.settings.enable_imap_sync:
        raise FeatureDisabledError("IMAP sync is disabled (ENABLE_IMAP_SYNC=false)")


def trigger(runtime: Runtime, tenant_id: str, account_id: uuid.UUID) -> Trigger:
    """Queue a sync unless one is queued or running; returns the job either way."""
    require_sync_enabled(runtime)
    with runtime.db.session() as session:
        ttl = timedelta(seconds=runtime.settings.sync_lock_ttl_seconds)
        busy = sync_state.is_busy(session, tenant_id, account_id, ttl)
        if busy is not None:
            return Trigger(busy.job_id or "", busy.state, already_running=True)
        job_id = uuid.uuid4().hex
        sync_state.mark_queued(session, tenant_id, account_id, job_id)
    assert runtime.queue is not None, "no job queue wired"
    runtime.queue.enqueue(SYNC_TASK, job_id, account_id=str(account_id), tenant_id=tenant_id)
    return Trigger(job_id, SyncRunState.QUEUED, already_running=False)


def trigger_and_wait(
    runtime: Runtime, tenant_id: str, account_id: uuid.UUID, seconds: float
) -> tuple[Trigger, sync_state.SyncStatus | None]:
    """:func:`trigger`, then wait up to ``seconds`` for that job to end: the trigger, and
    the status it ended with (None if it had not ended in time)."""
    ends = ends_for(runtime.settings.redis_url, runtime.settings.broker_url)
    with ends.listen(account_id) as listener:  # before the job exists: no end is missed
        job = trigger(runtime, tenant_id, account_id)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            listener.wait(min(left, RECHECK_S))
            current = sync_state.read_status(runtime.db, tenant_id, account_id)
            if current.job_id == job.job_id and current.state in ENDED:
                return job, current
    return job, None


def first_sync(runtime: Runtime, tenant_id: str, account_id: uuid.UUID) -> str | None:
    """Queue a new account's first sync (SYNC_ON_CREATE); its job id, or None if not queued."""
    settings = runtime.settings
    if not (settings.sync_on_create and settings.enable_imap_sync and runtime.queue):
        return None
    return trigger(runtime, tenant_id, account_id).job_id


def due_accounts(runtime: Runtime, limit: int) -> list[tuple[uuid.UUID, str]]:
    """Up to ``limit`` accounts due for a periodic sync, the most overdue first.

    Due: active, not refused at login, no sync queued or running under a live claim, and
    the last sync started more than SYNC_INTERVAL_MINUTES ago (or never). One query over
    every tenant (an operator path), so its cost does not grow with the number of ticks.
    """
    now = utcnow()
    cutoff = now - timedelta(minutes=runtime.settings.sync_interval_minutes)
    claim_ttl = now - timedelta(seconds=runtime.settings.sync_lock_ttl_seconds)
    queued = (SyncState.state == SyncRunState.QUEUED) & (SyncState.queued_at >= claim_ttl)
    running = (SyncState.state == SyncRunState.RUNNING) & (SyncState.lock_expires_at > now)
    query = (
        select(Account.id, Account.tenant_id)
        .outerjoin(SyncState, SyncState.account_id == Account.id)
        .where(Account.status == AccountStatus.ACTIVE)
        .where(
            or_(
                SyncState.account_id.is_(None),
                SyncState.started_at.is_(None),
                SyncState.started_at < cutoff,
            )
        )
        .where(
            or_(
                SyncState.account_id.is_(None),
                ~(queued | running | (SyncState.state == SyncRunState.AUTH_FAILED)),
            )
        )
        .order_by(SyncState.started_at.asc().nulls_first(), Account.id)
        .limit(limit)
    )
    with runtime.db.operator_session("beat: accounts due for a periodic sync") as session:
        return [(row.id, row.tenant_id) for row in session.execute(query)]


def trigger_due(runtime: Runtime) -> int:
    """Queue a sync of up to SYNC_DUE_BATCH due accounts (beat's periodic job).

    The batch is marked queued in one transaction, then enqueued; returns how many.
    """
    if not runtime.settings.enable_imap_sync:
        return 0
    due = due_accounts(runtime, runtime.settings.sync_due_batch)
    jobs = {account_id: uuid.uuid4().hex for account_id, _ in due}
    with runtime.db.operator_session("beat: mark the due accounts queued") as session:
        sync_state.mark_many_queued(session, [(a, t, jobs[a]) for a, t in due])
    assert runtime.queue is not None, "no job queue wired"
    runtime.queue.enqueue_many(
        SYNC_TASK,
        [(jobs[a], {"account_id": str(a), "tenant_id": t}) for a, t in due],
    )
    return len(due)
