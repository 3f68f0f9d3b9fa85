"""/api/sync: trigger an account's IMAP sync and read its status."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from functools import cache
from typing import Any

from apiflask import APIBlueprint
from flask import Response, url_for
from pydantic import BaseModel, Field

from email_service.api.http import prefer
from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.responses import json_response
from email_service.services.sync import schedule as sync_jobs
from email_service.services.sync import state as sync_state
from email_service.store.states import SyncRunState

bp = APIBlueprint("sync", __name__, url_prefix="/api/sync", tag="Sync")
# The longest ``Prefer: wait`` honoured: a waiting trigger holds a request thread, so a
# client that wants to follow a long sync reads the status or /api/events instead.
MAX_WAIT_S = 30
TRIGGER_RESPONSES: dict[int | str, Any] = {
    200: {
        "description": "Only with `Prefer: wait=N`: the job ended within N seconds (at most "
        f"{MAX_WAIT_S}); the body is its final status, as GET /api/sync/status shows it, and "
        "`Preference-Applied: wait=N` says the wait was honoured. Else the answer is the 202.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StatusOut"}}},
    },
    404: "Not Found",
    503: "Service Unavailable",
}


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
    percent: float


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
    percent: float = Field(description="done of every folder listed by this run, in percent")


@bp.post("/imap/<uuid:account_id>")
@bp.output(TriggerOut, status_code=202)
@bp.doc(responses=TRIGGER_RESPONSES)
def trigger_sync(account_id: uuid.UUID) -> Response:
    """Queue a sync of the account; a second trigger while one runs returns that job.

    With `Prefer: wait=N` (RFC 7240) the answer waits up to N seconds for that job to end.
    """
    wait = prefer.wait_seconds(MAX_WAIT_S)
    slots = waiting_slots(runtime().settings.gunicorn_threads)
    if wait is None or not slots.acquire(blocking=False):  # every slot waiting: not honoured
        return _queued(account_id, sync_jobs.trigger(runtime(), tenant_id(), account_id))
    try:
        result, ended = sync_jobs.trigger_and_wait(runtime(), tenant_id(), account_id, wait)
    finally:
        slots.release()
    answer = _queued(account_id, result) if ended is None else json_response(StatusOut, ended)
    answer.headers["Preference-Applied"] = f"wait={wait}"
    return answer


@cache
def waiting_slots(threads: int) -> threading.BoundedSemaphore:
    """How many triggers of this process may wait at once: all its request threads but one,
    so waiting clients never take the last thread (a trigger past them answers the 202)."""
    return threading.BoundedSemaphore(max(threads - 1, 1))


def _queued(account_id: uuid.UUID, result: sync_jobs.Trigger) -> Response:
    """202 with the job."""
    job = TriggerOut(
        job_id=result.job_id,
        state=result.state,
        already_running=result.already_running,
        status_url=url_for(".sync_status", account_id=account_id),
    )
    return json_response(TriggerOut, job, status=202)


@bp.get("/status/<uuid:account_id>")
@bp.output(StatusOut)
@bp.doc(responses=[404, 503])
def sync_status(account_id: uuid.UUID) -> Response:
    """State, times, per-folder progress, totals and the last error in words."""
    sync_jobs.require_sync_enabled(runtime())
    current = sync_state.read_status(runtime().db, tenant_id(), account_id)
    return json_response(StatusOut, current)
