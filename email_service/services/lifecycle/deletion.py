"""Deletion that deletes: accounts, whole tenants, and the blobs nothing refers to any more.

A deletion is recorded (a ``deletion`` row) in the transaction that starts it, so one
interrupted halfway is finished by the next sweep::

    delete_account:  rows of the account + deletion(account)   one transaction
                     -> collect(tenant) removes its blobs once past BLOB_GRACE_SECONDS
                     -> deletion row removed by the first collection that covered them
    purge_tenant:    deletion(tenant)                           committed first
                     -> every table's rows of the tenant, table by table
                     -> the tenant's blob namespace, whole
                     -> deletion row removed
    sweep:           finishes every deletion left, then collects every tenant's
                     unreferenced blobs and moves blobs of the shared layout into place

Collection is mark and sweep: the digests the tenant's rows name are read, then every
blob of the namespace not among them and older than the grace period is removed (and the
candidates are checked once more just before). A writer stores its blob before the row
that names it commits and refreshes an existing blob's age, so within the grace period
no blob is taken from under a write in progress.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from email_service.services import accounts
from email_service.services.runtime import Runtime
from email_service.store.blobs import BlobStore
from email_service.store.models import (
    Base,
    ComposeAttachment,
    Deletion,
    Draft,
    Message,
    Outbox,
    utcnow,
)
from email_service.store.scope import tenant_scope
from email_service.store.scrub import scrub

log = logging.getLogger(__name__)
# Digests checked against the rows per query when candidates are confirmed.
CONFIRM_BATCH = 500


class DeletionKind(StrEnum):
    """What a deletion row stands for."""

    ACCOUNT = "account"
    TENANT = "tenant"


@dataclass
class SweepReport:
    """What one sweep (or one tenant's collection) did."""

    tenants_purged: int = 0
    deletions_finished: int = 0
    blobs_removed: int = 0
    blobs_young: int = 0  # unreferenced but within the grace period: left for later
    blobs_rehomed: int = 0  # copied out of the shared layout of earlier versions
    legacy_removed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: SweepReport) -> None:
        """Sum another report into this one."""
        for name in ("tenants_purged", "deletions_finished", "blobs_removed", "blobs_young"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.blobs_rehomed += other.blobs_rehomed
        self.legacy_removed += other.legacy_removed
        self.errors += other.errors

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures."""
        return dict(self.__dict__)


def delete_account(runtime: Runtime, tenant_id: str, account_id: uuid.UUID) -> None:
    """Remove the account's rows now (404 if not the tenant's) and its blobs with the sweep."""
    with runtime.db.session() as session:
        accounts.delete_account(session, tenant_id, account_id)
        session.add(Deletion(tenant_id=tenant_id, account_id=account_id, kind=DeletionKind.ACCOUNT))
    scrub(runtime.db.engine)
    if runtime.queue is not None:  # committed: the worker sees the deletion row
        runtime.queue.enqueue(
            "finish_deletions", f"finish-deletions-{uuid.uuid4()}", tenant_id=tenant_id
        )


def purge_tenant(runtime: Runtime, tenant_id: str) -> SweepReport:
    """Remove every row and blob of a tenant (idempotent: a second purge finds nothing)."""
    with runtime.db.session() as session:
        pending = session.scalar(
            select(Deletion.id).where(
                Deletion.tenant_id == tenant_id, Deletion.kind == DeletionKind.TENANT
            )
        )
        if pending is None:
            session.add(Deletion(tenant_id=tenant_id, kind=DeletionKind.TENANT))
    return finish_deletions(runtime, tenant_id)


def finish_deletions(runtime: Runtime, tenant_id: str) -> SweepReport:
    """Finish the tenant's recorded deletions: a purge to the end, accounts' blobs collected."""
    with runtime.db.reading() as session:
        kinds = set(session.scalars(select(Deletion.kind).where(Deletion.tenant_id == tenant_id)))
    if DeletionKind.TENANT in kinds:
        return _purge(runtime, tenant_id)
    if DeletionKind.ACCOUNT in kinds:
        return collect(runtime, tenant_id)
    return SweepReport()


def _purge(runtime: Runtime, tenant_id: str) -> SweepReport:
    """Rows table by table (children first, each committed), then the blob namespace."""
    for table in reversed(Base.metadata.sorted_tables):
        if "tenant_id" in table.c and table.name != Deletion.__tablename__:
            with runtime.db.session() as session:
                session.execute(table.delete().where(table.c.tenant_id == tenant_id))
    scrub(runtime.db.engine)
    runtime.blobs.tenant(tenant_id).destroy()
    with runtime.db.session() as session:
        session.execute(delete(Deletion).where(Deletion.tenant_id == tenant_id))
    log.info("tenant purged", extra={"tenant_id": tenant_id})
    return SweepReport(tenants_purged=1)


def collect(runtime: Runtime, tenant_id: str, legacy: BlobStore | None = None) -> SweepReport:
    """Remove the tenant's unreferenced blobs past the grace period; finish covered deletions.

    With ``legacy``, blobs the tenant's rows name that only the shared layout holds are
    copied into the tenant's namespace first.
    """
    started = utcnow()
    cutoff = time.time() - runtime.settings.blob_grace_seconds
    store = runtime.blobs.tenant(tenant_id)
    report = SweepReport()
    with runtime.db.reading() as session:
        referenced = _referenced(session, tenant_id)
    present: set[str] = set()
    candidates: list[str] = []
    for digest, mtime in store.listing():
        present.add(digest)
        if digest in referenced:
            continue
        if mtime < cutoff:
            candidates.append(digest)
        else:
            report.blobs_young += 1
    with runtime.db.reading() as session:  # rows committed since the first read keep theirs
        candidates = [
            d for d in candidates if d not in _still_named(session, tenant_id, candidates)
        ]
    report.blobs_removed = sum(store.delete(digest) for digest in candidates)
    store.remove_temporaries(cutoff)
    store.prune()
    if legacy is not None:
        report.blobs_rehomed = _rehome(store, legacy, referenced - present)
    covered = started - timedelta(seconds=runtime.settings.blob_grace_seconds)
    report.deletions_finished = _finish_accounts(runtime, tenant_id, covered)
    return report


def sweep(runtime: Runtime) -> SweepReport:
    """Every tenant: finish its deletions, collect its blobs; then retire the shared layout."""
    report = SweepReport()
    legacy = runtime.blobs.legacy()
    legacy_started = time.time()
    with runtime.db.operator_reading("sweeper: tenants with deletions or blobs") as session:
        purges = set(
            session.scalars(select(Deletion.tenant_id).where(Deletion.kind == DeletionKind.TENANT))
        )
        tenants = set(runtime.blobs.tenants()) | _tenants_with_blobs(session)
    for tenant_id in sorted(purges | tenants):
        try:
            with tenant_scope(tenant_id):
                if tenant_id in purges:
                    report.add(_purge(runtime, tenant_id))
                else:
                    report.add(collect(runtime, tenant_id, legacy))
        except Exception as exc:  # one tenant's trouble must not stop the others'
            log.exception("sweep of a tenant failed", extra={"tenant_id": tenant_id})
            report.errors.append(f"{tenant_id}: {exc}")
    if legacy is not None and not report.errors:
        report.legacy_removed = _retire_legacy(runtime, legacy, legacy_started)
    return report


def _referenced(session: Session, tenant_id: str) -> set[str]:
    """Every digest the tenant's rows name."""
    found: set[str] = set()
    for column, tenant in _NAMING_COLUMNS:
        found.update(
            d for d in session.scalars(select(column).where(tenant == tenant_id).distinct()) if d
        )
    return found


def _still_named(session: Session, tenant_id: str, digests: list[str]) -> set[str]:
    """Which of these digests a row of the tenant names now."""
    named: set[str] = set()
    for start in range(0, len(digests), CONFIRM_BATCH):
        batch = digests[start : start + CONFIRM_BATCH]
        for column, tenant in _NAMING_COLUMNS:
            named.update(
                session.scalars(select(column).where(tenant == tenant_id, column.in_(batch)))
            )
    return named


def _tenants_with_blobs(session: Session) -> set[str]:
    """Tenants whose rows name blobs (they may still have some in the shared layout)."""
    tenants: set[str] = set()
    for _column, tenant in _NAMING_COLUMNS:
        tenants.update(session.scalars(select(tenant).distinct()))
    return tenants


def _rehome(store: BlobStore, legacy: BlobStore, missing: Iterable[str]) -> int:
    """Copy blobs the tenant names from the shared layout into its namespace."""
    moved = 0
    for digest in sorted(missing):
        if legacy.exists(digest):
            store.put(legacy.get(digest))
            moved += 1
    store.flush()
    return moved


def _retire_legacy(runtime: Runtime, legacy: BlobStore, started: float) -> int:
    """Remove shared-layout blobs: every tenant has its copy (this sweep made them)."""
    cutoff = min(started, time.time() - runtime.settings.blob_grace_seconds)
    return sum(legacy.delete(digest) for digest, mtime in legacy.listing() if mtime < cutoff)


def _finish_accounts(runtime: Runtime, tenant_id: str, covered: datetime) -> int:
    """Remove account deletions whose blobs a collection has now had the chance to take."""
    with runtime.db.session() as session:
        result = session.execute(
            delete(Deletion).where(
                Deletion.tenant_id == tenant_id,
                Deletion.kind == DeletionKind.ACCOUNT,
                Deletion.requested_at <= covered,
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


# (digest column, its tenant column): every place a row names a blob.
_NAMING_COLUMNS = (
    (Message.blob_sha256, Message.tenant_id),
    (Outbox.mime_blob_sha256, Outbox.tenant_id),
    (ComposeAttachment.blob_sha256, ComposeAttachment.tenant_id),
    (Draft.forward_blob_sha256, Draft.tenant_id),
)
