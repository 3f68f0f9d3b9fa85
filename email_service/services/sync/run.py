"""Run one sync of one account: lock, credentials, guarded connection, engine, outcome."""

from __future__ import annotations

import uuid
from datetime import timedelta

from email_service.errors import (
    ConflictError,
    EmailServiceError,
    RemoteAuthError,
    RemoteTemporaryError,
)
from email_service.services.gateways import account_login, blob_store, open_imap
from email_service.services.runtime import Runtime
from email_service.services.sync import state as sync_state
from email_service.services.sync.engine import Progress, SyncContext, SyncEngine, SyncReport
from email_service.services.sync.ingest_pool import parse_processes
from email_service.store.models import Account
from email_service.store.states import AccountStatus, SyncRunState


def run_sync(
    runtime: Runtime,
    tenant_id: str,
    account_id: uuid.UUID,
    owner: str,
    progress: Progress | None = None,
) -> SyncReport:
    """Sync the account now, in this thread; raises if another run holds the lock."""
    with runtime.db.session() as session:
        sync_state.ensure(session, tenant_id, account_id)
        login = account_login(session, runtime, tenant_id, account_id)
    ttl = timedelta(seconds=runtime.settings.sync_lock_ttl_seconds)
    with runtime.db.session() as session:
        if not sync_state.acquire(session, account_id, owner, ttl):
            raise ConflictError("a sync of this account is already running")
    ctx = SyncContext(
        runtime.db,
        blob_store(runtime),
        tenant_id,
        account_id,
        owner,
        progress=progress,
        lock_ttl=ttl,
        parse_bodies=runtime.settings.enable_email_parsing,
        parse_processes=parse_processes(runtime.settings.sync_parse_processes),
    )
    try:
        with open_imap(runtime, login) as imap:
            report = SyncEngine(ctx, imap).run()
    except RemoteAuthError as exc:
        _finish(
            runtime,
            account_id,
            owner,
            SyncRunState.AUTH_FAILED,
            exc.message,
            AccountStatus.AUTH_FAILED,
        )
        raise
    except EmailServiceError as exc:
        _finish(runtime, account_id, owner, SyncRunState.ERROR, exc.message)
        raise
    except OSError as exc:  # socket trouble not already mapped by the protocol layer
        _finish(runtime, account_id, owner, SyncRunState.ERROR, f"connection failed: {exc}")
        raise RemoteTemporaryError(f"connection failed: {exc}") from exc
    except BaseException:
        _finish(runtime, account_id, owner, SyncRunState.ERROR, "internal error during sync")
        raise
    _finish(runtime, account_id, owner, SyncRunState.OK, None, AccountStatus.ACTIVE)
    return report


def _finish(
    runtime: Runtime,
    account_id: uuid.UUID,
    owner: str,
    state: str,
    error: str | None,
    account_status: str | None = None,
) -> None:
    with runtime.db.session() as session:
        if account_status:
            row = session.get(Account, account_id)
            if row is not None and row.status != AccountStatus.DISABLED:
                row.status = account_status
        sync_state.release(session, account_id, owner, state, error)
