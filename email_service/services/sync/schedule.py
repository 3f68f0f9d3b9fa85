"""Triggering syncs: one at a time per account, queued only after the commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from email_service.errors import FeatureDisabledError
from email_service.services.runtime import Runtime
from email_service.services.sync import state as sync_state
from email_service.store.models import Account, SyncState, utcnow
from email_service.store.states import AccountStatus, SyncRunState

SYNC_TASK = "sync_imap_account"


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


def due_accounts(runtime: Runtime, limit: int = 1000) -> list[tuple[uuid.UUID, str]]:
    """Active accounts whose last sync started longer ago than SYNC_INTERVAL_MINUTES."""
    cutoff = utcnow().timestamp() - runtime.settings.sync_interval_minutes * 60
    with runtime.db.session() as session:
        rows = session.execute(
            select(Account.id, Account.tenant_id, SyncState.started_at, SyncState.state)
            .outerjoin(SyncState, SyncState.account_id == Account.id)
            .where(Account.status == AccountStatus.ACTIVE)
            .limit(limit)
        ).all()
    return [
        (account_id, tenant_id)
        for account_id, tenant_id, started, state in rows
        if state != SyncRunState.AUTH_FAILED and (started is None or started.timestamp() < cutoff)
    ]


def trigger_due(runtime: Runtime) -> int:
    """Queue a sync of every due account (beat's periodic job); returns how many."""
    if not runtime.settings.enable_imap_sync:
        return 0
    queued = 0
    for account_id, tenant_id in due_accounts(runtime):
        if not trigger(runtime, tenant_id, account_id).already_running:
            queued += 1
    return queued
