"""The job a pushed change queues: take the mark, sync that folder, record the latency.

The mark is taken before the sync starts, so a change the server reports while it runs
queues the next one. When another sync of the account holds the lock, it may already have
passed this folder: the job marks again and comes back after RETRY_S instead of dropping
the change.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from email_service.errors import ConflictError, NotFoundError
from email_service.observability import metrics
from email_service.services.push.pending import Pending
from email_service.services.push.supervisor import FOLDER_SYNC_TASK
from email_service.services.runtime import Runtime
from email_service.services.sync.run import run_sync

log = logging.getLogger(__name__)
# Seconds before a change that met a running sync is tried again (syncs of an unchanged
# account take a fraction of that).
RETRY_S = 1.0


def sync_pushed_folder(
    runtime: Runtime,
    pending: Pending,
    tenant_id: str,
    account_id: uuid.UUID,
    folder: str,
    job_id: str,
) -> dict[str, Any]:
    """Sync ``folder`` (raw name; "" for every folder) of the account after a push."""
    if not runtime.settings.enable_imap_sync:
        pending.take(account_id, folder)
        return {"skipped": "ENABLE_IMAP_SYNC is false"}
    event_at = pending.take(account_id, folder)
    try:
        report = run_sync(runtime, tenant_id, account_id, owner=job_id, folder=folder or None)
    except ConflictError:
        if pending.mark(account_id, folder, event_at or time.time()):
            assert runtime.queue is not None, "no job queue wired"
            kwargs = {"account_id": str(account_id), "tenant_id": tenant_id, "folder": folder}
            runtime.queue.enqueue_later(RETRY_S, FOLDER_SYNC_TASK, uuid.uuid4().hex, **kwargs)
        return {"skipped": "already running; queued again"}
    except NotFoundError:
        return {"skipped": "account not found"}
    if event_at is not None:
        metrics.observe_push_latency(time.time() - event_at)
    return {
        "folder": folder,
        "new_messages": report.new_messages,
        "deleted": report.deleted,
        "flag_updates": report.flag_updates,
        "seconds": round(report.seconds, 3),
    }
