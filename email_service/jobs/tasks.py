"""Celery tasks under their public names (docs/operations.md); thin wrappers over ``jobs.work``."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task, current_app, shared_task

from email_service.errors import RemoteTemporaryError
from email_service.jobs import event_work, work
from email_service.jobs.queues import CeleryQueue

# Temporary remote trouble is retried: 30 s, 60 s, 120 s ... capped at 10 min, jittered
# (below the broker's visibility timeout).
RETRY_BACKOFF_S = 30
RETRY_BACKOFF_MAX_S = 600
MAX_RETRIES = 6
# Options of every task that talks to a mail server: acknowledged after it ran, and retried
# as above on temporary remote trouble.
REMOTE_TASK: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (RemoteTemporaryError,),
    "retry_backoff": RETRY_BACKOFF_S,
    "retry_backoff_max": RETRY_BACKOFF_MAX_S,
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}


def _runtime() -> Any:
    runtime = work.worker_runtime()
    if runtime.queue is None:
        runtime.queue = CeleryQueue(current_app)
    return runtime


@shared_task(name="sync_imap_account", bind=True, **REMOTE_TASK)
def sync_imap_account(self: Task[Any, Any], account_id: str, tenant_id: str) -> dict[str, Any]:
    """Fetch emails from the account's IMAP server into the store."""
    job_id = str(self.request.id or uuid.uuid4().hex)
    return work.sync_account(_runtime(), account_id, tenant_id, job_id)


@shared_task(name="sync_imap_folder", bind=True, **REMOTE_TASK)
def sync_imap_folder(
    self: Task[Any, Any], account_id: str, tenant_id: str, folder: str
) -> dict[str, Any]:
    """Sync one folder the IMAP server reported changed (queued by a watcher)."""
    job_id = str(self.request.id or uuid.uuid4().hex)
    return work.sync_folder(_runtime(), account_id, tenant_id, folder, job_id)


@shared_task(name="sync_due_accounts", acks_late=True)
def sync_due_accounts() -> dict[str, Any]:
    """Beat's periodic job: queue a sync of every account that is due."""
    return work.sync_due(_runtime())


# The outbox row is the result: nothing is written to the result backend per message.
@shared_task(name="send_email", bind=True, acks_late=True, ignore_result=True)
def send_email(self: Task[Any, Any], draft_id: str, tenant_id: str) -> dict[str, Any]:
    """Send email via Postfix: at most once; temporary trouble comes back after a back-off."""
    result = work.send_email(_runtime(), draft_id, tenant_id)
    if result["retry_in"] is not None:
        # The outbox row counts attempts and decides when to give up, not Celery.
        raise self.retry(countdown=result["retry_in"], max_retries=None)
    return result


@shared_task(name="send_due_messages", acks_late=True)
def send_due_messages() -> dict[str, Any]:
    """Beat's periodic job: scheduled sends now due, stale sends, reconciliation, Sent copies."""
    return work.send_due(_runtime())


# Published every second by beat: no result per tick.
@shared_task(name="queue_deferred_jobs", ignore_result=True)
def queue_deferred_jobs() -> dict[str, Any]:
    """Beat's periodic job: queue the deferred jobs now due (Drafts copies of saved drafts)."""
    queue = _runtime().queue
    return {"queued": queue.publish_due() if isinstance(queue, CeleryQueue) else 0}


@shared_task(name="apply_message_changes", **REMOTE_TASK)
def apply_message_changes(account_id: str, tenant_id: str, change: str) -> dict[str, Any]:
    """Set flags, move or delete messages on the IMAP server (the API changed them locally)."""
    return work.apply_changes(_runtime(), account_id, tenant_id, change)


@shared_task(name="apply_folder_change", **REMOTE_TASK)
def apply_folder_change(account_id: str, tenant_id: str, change: str) -> dict[str, Any]:
    """Create, rename, (un)subscribe or delete a folder on the IMAP server (shown locally)."""
    return work.apply_folder_change(_runtime(), account_id, tenant_id, change)


@shared_task(name="unsubscribe_message", **REMOTE_TASK)
def unsubscribe_message(message_id: str, tenant_id: str, url: str) -> dict[str, Any]:
    """POST the RFC 8058 one-click unsubscribe request; mark the message once done."""
    return work.unsubscribe_message(_runtime(), message_id, tenant_id, url)


# The draft row records its copy (imap_uid, imap_saved_at): no result per save.
@shared_task(name="store_draft_copy", ignore_result=True, **REMOTE_TASK)
def store_draft_copy(
    draft_id: str, tenant_id: str, account_id: str, reason: str = ""
) -> dict[str, Any]:
    """Save the draft's current version to the account's IMAP Drafts folder (or remove it)."""
    return work.store_draft_copy(_runtime(), draft_id, tenant_id, account_id, reason)


@shared_task(name="parse_email_body", acks_late=True)
def parse_email_body(message_id: str, tenant_id: str) -> dict[str, Any]:
    """Parse HTML/plain-text email bodies (again) from the stored raw MIME."""
    return work.parse_email_body(_runtime(), message_id, tenant_id)


@shared_task(name="dispatch_webhooks", acks_late=True, ignore_result=True)
def dispatch_webhooks() -> dict[str, Any]:
    """Beat's periodic job: new changes into webhook deliveries; queue those due."""
    return event_work.dispatch_webhooks(_runtime())


# The delivery row keeps attempts and decides on retries, not Celery.
@shared_task(name="deliver_webhook", acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: str) -> dict[str, Any]:
    """POST one webhook delivery (Standard Webhooks signature) and record the outcome."""
    return event_work.deliver_webhook(_runtime(), delivery_id)


@shared_task(name="prune_change_log", acks_late=True)
def prune_change_log() -> dict[str, Any]:
    """Beat's periodic job: drop change-log rows older than the retention."""
    return event_work.prune_change_log(_runtime())


@shared_task(name="finish_deletions", acks_late=True)
def finish_deletions(tenant_id: str) -> dict[str, Any]:
    """Finish a tenant's deletions (after an account was deleted)."""
    return work.finish_deletions(_runtime(), tenant_id)


@shared_task(name="index_search_pairs", acks_late=True)
def index_search_pairs() -> dict[str, Any]:
    """Beat's periodic job: the phrase pairs of messages stored since the last tick."""
    return work.pair_search_words(_runtime())


@shared_task(name="sweep_blobs", acks_late=True)
def sweep_blobs() -> dict[str, Any]:
    """Finish interrupted deletions; remove blobs no row names, past the grace period."""
    return work.sweep_blobs(_runtime())
