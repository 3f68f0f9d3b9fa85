"""Run one sync of one account: lock, credentials, guarded connection, engine, outcome.

Credentials are decrypted here, inside the job, and live only as long as the IMAP login.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.config import Security
from email_service.errors import (
    ConflictError,
    EmailServiceError,
    NotFoundError,
    RemoteAuthError,
    RemoteTemporaryError,
)
from email_service.mail.imap import ImapSession
from email_service.services import sync_state, writeback
from email_service.services.hosts import Endpoint
from email_service.services.ingest_pool import parse_processes
from email_service.services.runtime import Runtime
from email_service.services.sync import Progress, SyncContext, SyncEngine, SyncReport
from email_service.store.blobs import BlobStore
from email_service.store.models import Account


@dataclass(frozen=True)
class Login:
    """What it takes to open the account's IMAP session."""

    endpoint: Endpoint
    username: str
    password: str


def account_login(
    session: Session, runtime: Runtime, tenant_id: str, account_id: uuid.UUID
) -> Login:
    """The account's IMAP endpoint and decrypted credentials (jobs and checks only)."""
    row = session.scalar(
        select(Account).where(Account.tenant_id == tenant_id, Account.id == account_id)
    )
    if row is None:
        raise NotFoundError("account not found", account_id=str(account_id))
    endpoint = Endpoint(row.imap_host, row.imap_port, Security(row.imap_security))
    return Login(endpoint, row.username, runtime.vault.decrypt(row.password_ciphertext))


def blob_store(runtime: Runtime) -> BlobStore:
    """The raw-MIME store under DATA_DIR."""
    return BlobStore(runtime.settings.data_dir / "blobs", fsync=runtime.settings.blob_fsync)


def open_imap(runtime: Runtime, login: Login) -> ImapSession:
    """Connect to a vetted address of the account's server and log in."""
    addresses = runtime.hosts.addresses(login.endpoint)
    ca_file = runtime.settings.mail_ca_file
    return ImapSession(
        login.endpoint.host,
        login.endpoint.port,
        login.endpoint.security.value,
        login.username,
        login.password,
        timeout=runtime.settings.imap_timeout,
        connect_address=addresses[0],
        ca_file=str(ca_file) if ca_file else None,
    )


def run_sync(
    runtime: Runtime,
    tenant_id: str,
    account_id: uuid.UUID,
    owner: str,
    progress: Progress | None = None,
    folder: str | None = None,
) -> SyncReport:
    """Sync the account (or one folder, by raw name) now; raises if a run holds the lock."""
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
        only_folder=folder,
    )
    try:
        with open_imap(runtime, login) as imap:
            report = SyncEngine(ctx, imap).run()
    except RemoteAuthError as exc:
        _finish(
            runtime, account_id, owner, "auth_failed", exc.message, account_status="auth_failed"
        )
        raise
    except EmailServiceError as exc:
        _finish(runtime, account_id, owner, "error", exc.message)
        raise
    except OSError as exc:  # socket trouble not already mapped by the protocol layer
        _finish(runtime, account_id, owner, "error", f"connection failed: {exc}")
        raise RemoteTemporaryError(f"connection failed: {exc}") from exc
    except BaseException:
        _finish(runtime, account_id, owner, "error", "internal error during sync")
        raise
    _finish(runtime, account_id, owner, "ok", None, account_status="active")
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
            if row is not None and row.status != "disabled":
                row.status = account_status
        sync_state.release(session, account_id, owner, state, error)


def apply_changes(
    runtime: Runtime, tenant_id: str, account_id: uuid.UUID, change_json: str
) -> dict[str, int]:
    """The write-back job: apply a client's change on the server, then to the store."""
    change = writeback.Change.from_json(change_json)
    with runtime.db.session() as session:
        login = account_login(session, runtime, tenant_id, account_id)
    with open_imap(runtime, login) as imap, runtime.db.session() as session:
        return writeback.apply_on_server(session, imap, change)
