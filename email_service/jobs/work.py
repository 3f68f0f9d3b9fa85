"""What each task does, shared by Celery workers and the embedded runner: ids in, a
service call, a small JSON-able summary out."""

from __future__ import annotations

import logging
import threading
import uuid
from functools import cache
from typing import Any

from email_service.config import load_settings, with_generated_secrets
from email_service.errors import ConflictError, NotFoundError
from email_service.services import gateways, parsing, search, writeback
from email_service.services.folders import apply as folder_jobs
from email_service.services.lifecycle import deletion
from email_service.services.outgoing import delivery, draft_copy, reconcile, unsubscribe
from email_service.services.push import folder_sync, pending
from email_service.services.runtime import Runtime
from email_service.services.sync import schedule as sync_jobs
from email_service.services.sync.run import run_sync
from email_service.store.scope import in_tenant_scope

log = logging.getLogger(__name__)


@cache
def worker_runtime() -> Runtime:
    """The worker process's runtime, built once from the environment."""
    settings = with_generated_secrets(load_settings(), log.warning)
    return Runtime.build(settings)


@in_tenant_scope
def sync_account(runtime: Runtime, account_id: str, tenant_id: str, job_id: str) -> dict[str, Any]:
    """Run one sync; an account already being synced or gone is not an error."""
    try:
        report = run_sync(runtime, tenant_id, uuid.UUID(account_id), owner=job_id)
    except ConflictError:
        log.info("sync skipped: already running", extra={"account_id": account_id})
        return {"skipped": "already running"}
    except NotFoundError:
        log.info("sync skipped: account deleted", extra={"account_id": account_id})
        return {"skipped": "account not found"}
    log.info(
        "account synced",
        extra={
            "account_id": account_id,
            "tenant_id": tenant_id,
            "new": report.new_messages,
            "duration_ms": round(report.seconds * 1000),
        },
    )
    return {
        "new_messages": report.new_messages,
        "bytes": report.bytes,
        "deleted": report.deleted,
        "flag_updates": report.flag_updates,
        "seconds": round(report.seconds, 3),
    }


@in_tenant_scope
def sync_folder(
    runtime: Runtime, account_id: str, tenant_id: str, folder: str, job_id: str
) -> dict[str, Any]:
    """Sync one folder after the server pushed a change ("" : the whole account)."""
    redis_url = pending.push_redis_url(runtime.settings.redis_url, runtime.settings.broker_url)
    return folder_sync.sync_pushed_folder(
        runtime, pending.pending_for(redis_url), tenant_id, uuid.UUID(account_id), folder, job_id
    )


@in_tenant_scope
def apply_changes(runtime: Runtime, account_id: str, tenant_id: str, change: str) -> dict[str, Any]:
    """Apply a client's flag/move/delete change on the server, then to the store."""
    return writeback.apply_changes(runtime, tenant_id, uuid.UUID(account_id), change)


@in_tenant_scope
def apply_folder_change(
    runtime: Runtime, account_id: str, tenant_id: str, change: str
) -> dict[str, Any]:
    """Apply a client's folder change on the server, then reconcile the folder rows."""
    return folder_jobs.apply_folder_change(runtime, tenant_id, uuid.UUID(account_id), change)


@in_tenant_scope
def unsubscribe_message(
    runtime: Runtime, message_id: str, tenant_id: str, url: str
) -> dict[str, Any]:
    """The one-click unsubscribe POST for a message (RFC 8058)."""
    return unsubscribe.one_click(runtime, tenant_id, uuid.UUID(message_id), url)


@in_tenant_scope
def store_draft_copy(
    runtime: Runtime, draft_id: str, tenant_id: str, account_id: str, reason: str = ""
) -> dict[str, Any]:
    """Make the account's Drafts folder hold the draft's current version (or none)."""
    result = draft_copy.store_copy(
        runtime, tenant_id, uuid.UUID(draft_id), uuid.UUID(account_id), reason
    )
    return result.as_dict()


@in_tenant_scope
def parse_email_body(runtime: Runtime, message_id: str, tenant_id: str) -> dict[str, Any]:
    """Parse a stored message again from its raw MIME (skipped when parsing is off)."""
    if not runtime.settings.enable_email_parsing:
        return {"skipped": "ENABLE_EMAIL_PARSING is false"}
    with runtime.db.session() as session:
        return parsing.reparse(
            session, gateways.blob_store(runtime, tenant_id), tenant_id, uuid.UUID(message_id)
        )


def sync_due(runtime: Runtime) -> dict[str, Any]:
    """Queue every account whose periodic sync is due."""
    return {"queued": sync_jobs.trigger_due(runtime)}


@in_tenant_scope
def send_email(runtime: Runtime, draft_id: str, tenant_id: str) -> dict[str, Any]:
    """Move the draft's send one step; ``retry_in`` asks for another run that much later."""
    outcome = delivery.send_email(runtime, tenant_id, uuid.UUID(draft_id))
    log.info(
        "send step",
        extra={"draft_id": draft_id, "tenant_id": tenant_id, "state": outcome.state},
    )
    return {"state": outcome.state, "retry_in": outcome.retry_in, "detail": outcome.detail}


def send_email_embedded(
    runtime: Runtime, job_id: str, draft_id: str, tenant_id: str
) -> dict[str, Any]:
    """``send_email`` for the embedded runner, which re-queues itself on ``retry_in``."""
    result = send_email(runtime, draft_id, tenant_id)
    if result["retry_in"] is not None:
        kwargs = {"draft_id": draft_id, "tenant_id": tenant_id}
        timer = threading.Timer(result["retry_in"], _requeue, (runtime, job_id, kwargs))
        timer.daemon = True
        timer.start()
    return result


def _requeue(runtime: Runtime, job_id: str, kwargs: dict[str, str]) -> None:
    """Queue the send again; a runner already shut down leaves it to the next beat."""
    try:
        if runtime.queue is not None:
            runtime.queue.enqueue("send_email", job_id, **kwargs)
    except RuntimeError:
        log.info("job runner stopped; the periodic job will pick this send up", extra=kwargs)


def send_due(runtime: Runtime) -> dict[str, Any]:
    """Queue every send that is due, stale, to reconcile or missing its Sent copy."""
    return {"queued": reconcile.send_due(runtime)}


@in_tenant_scope
def finish_deletions(runtime: Runtime, tenant_id: str) -> dict[str, Any]:
    """Finish the tenant's recorded deletions (an account's blobs, a tenant purge)."""
    return deletion.finish_deletions(runtime, tenant_id).as_dict()


def pair_search_words(runtime: Runtime) -> dict[str, Any]:
    """Write the phrase pairs of newly stored messages (a tick's worth)."""
    return {"paired": search.pair_stored_messages(runtime.db)}


def sweep_blobs(runtime: Runtime) -> dict[str, Any]:
    """Finish every deletion left and collect unreferenced blobs past the grace period."""
    return deletion.sweep(runtime).as_dict()
