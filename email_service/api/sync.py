"""/api/sync: trigger an account's IMAP sync and read its status."""

from __future__ import annotations

import uuid
from datetime import datetime

from apiflask import APIBlueprint
from flask import url_for
from pydantic import BaseModel

from email_service.api.context import runtime, tenant_id
from email_service.services.sync import schedule as sync_jobs
from email_service.services.sync import state as sync_state
from email_service.store.states import SyncRunState

bp = APIBlueprint("sync", __name__, url_prefix="/api/sync", tag="Sync")


class TriggerOut(BaseModel):
    """The job that syncs the account."""

    job_id: str
    state: SyncRunState
    already_running: bool
    status_url: str


class FolderProgress(BaseModel):
    """Messages done of total in one folder."""

    done: int
    total: int


class StatusOut(BaseModel):
    """Where an account's sync stands."""

    account_id: uuid.UUID
    state: SyncRunState
    job_id: str | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    failures: int
    folders: dict[str, FolderProgress]
    messages_synced: int
    bytes_synced: int


@bp.post("/imap/<uuid:account_id>")
@bp.output(TriggerOut, status_code=202)
@bp.doc(responses=[404, 503])
def trigger_sync(account_id: uuid.UUID) -> TriggerOut:
    """Queue a sync of the account; a second trigger while one runs returns that job."""
    result = sync_jobs.trigger(runtime(), tenant_id(), account_id)
    return TriggerOut(
        job_id=result.job_id,
        state=result.state,
        already_running=result.already_running,
        status_url=url_for(".sync_status", account_id=account_id),
    )


@bp.get("/status/<uuid:account_id>")
@bp.output(StatusOut)
@bp.doc(responses=[404, 503])
def sync_status(account_id: uuid.UUID) -> StatusOut:
    """State, times, per-folder progress, totals and the last error in words."""
    sync_jobs.require_sync_enabled(runtime())
    with runtime().db.session() as session:
        current = sync_state.status(session, tenant_id(), account_id)
    return StatusOut.model_validate(current, from_attributes=True)
