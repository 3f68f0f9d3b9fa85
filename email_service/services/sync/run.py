"""Run one sync of one account: lock, credentials, guarded connection, engine, outcome."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from email_service.errors import (
    ConflictError,
    EmailServiceError,
    RemoteAuthError,
    RemoteError,
    RemoteTemporaryError,
)
from email_service.services import caller_errors
from email_service.services.events import record as announce
from email_service.services.gateways import blob_store, row_login
from email_service.services.imap_pool import imap_pool
from email_service.services.runtime import Runtime
from email_service.services.sync import folders as folders_repo
from email_service.services.sync import state as sync_state
from email_service.services.sync.ends import ends_for
from email_service.services.sync.engine import Progress, SyncContext, SyncEngine, SyncReport
from email_service.services.sync.folders import Checkpoint
from email_service.services.sync.ingest_pool import parse_processes
from email_service.store.models import Account
from email_service.store.states import AccountStatus, SyncRunState
from email_service.store.tenancy import tenant_row


def run_sync(
    runtime: Runtime,
    tenant_id: str,
    account_id: uuid.UUID,
    owner: str,
    progress: Progress | None = None,
    folder: str | None = None,
) -> SyncReport:
    """Sync the account (or one folder, by raw name) now; raises if a run holds the lock."""
    ttl = timedelta(seconds=runtime.settings.sync_lock_ttl_seconds)
    account, known = _start(runtime, tenant_id, account_id, owner, ttl, folder)
    ctx = SyncContext(
        runtime.db,
        blob_store(runtime, tenant_id),
        tenant_id,
        account_id,
        owner,
        progress=progress,
        lock_ttl=ttl,
        parse_bodies=runtime.settings.enable_email_parsing,
        parse_processes=parse_processes(runtime.settings.sync_parse_processes),
        only_folder=folder,
        known=known,
    )
    connected = False
    try:
        # Inside the lock: an OAuth2 login may refresh its token, and a refused grant
        # ends this run as auth_failed like a refused password. The session is kept in
        # the process's pool afterwards: the next run of this account skips the login.
        with imap_pool(runtime).session(runtime, row_login(runtime, account), True) as pooled:
            connected = True
            report = SyncEngine(ctx, pooled.imap).run()
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
    except RemoteError as exc:
        if connected:
            _finish(runtime, account_id, owner, SyncRunState.ERROR, exc.message)
            raise
        told = caller_errors.before_login("IMAP", exc)  # no port scan through sync status
        _finish(runtime, account_id, owner, SyncRunState.ERROR, told)
        raise type(exc)(told, **exc.details) from exc
    except EmailServiceError as exc:
        _finish(runtime, account_id, owner, SyncRunState.ERROR, exc.message)
        raise
    except OSError as exc:  # socket trouble not already mapped by the protocol layer
        told = f"connection failed: {exc}" if connected else caller_errors.before_login("IMAP", exc)
        _finish(runtime, account_id, owner, SyncRunState.ERROR, told)
        raise RemoteTemporaryError(told) from exc
    except BaseException:
        _finish(runtime, account_id, owner, SyncRunState.ERROR, "internal error during sync")
        raise
    _finish(runtime, account_id, owner, SyncRunState.OK, None, AccountStatus.ACTIVE)
    return report


def _start(
    runtime: Runtime,
    tenant_id: str,
    account_id: uuid.UUID,
    owner: str,
    ttl: timedelta,
    folder: str | None,
) -> tuple[Account, Checkpoint | None]:
    """One transaction: the lock (the status row made first if missing; NotFoundError for
    no such account), the account row, and the checkpoint of a pushed folder."""
    for attempt in (1, 2):
        try:
            with runtime.db.session() as session:
                if not sync_state.start(session, tenant_id, account_id, owner, ttl):
                    raise ConflictError("a sync of this account is already running")
                account = tenant_row(
                    session, Account, tenant_id, account_id, account_id=str(account_id)
                )
                known = folders_repo.checkpoint_of(session, account_id, folder) if folder else None
                return account, known
        except IntegrityError:
            # Jobs pushed for several folders of an account never synced race to make its
            # status row: the loser takes (or finds held) the winner's.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


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
            changed = session.execute(
                update(Account)
                .where(
                    Account.id == account_id,
                    Account.status.not_in((account_status, AccountStatus.DISABLED)),
                )
                .values(status=account_status)
                .returning(Account.tenant_id)
                .execution_options(synchronize_session=False)
            ).first()
            if changed is not None:
                announce.account_status_set(session, changed.tenant_id, account_id, account_status)
        sync_state.release(session, account_id, owner, state, error, commit=False)
    # Committed: a trigger waiting for this run (Prefer: wait) reads the status now.
    ends_for(runtime.settings.redis_url, runtime.settings.broker_url).announce(account_id)
