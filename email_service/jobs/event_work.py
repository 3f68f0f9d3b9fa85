"""What the change-log and webhook tasks do, for Celery workers and the embedded runner."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from email_service.services.events import dispatch, feed
from email_service.services.events.webhooks import WebhookPolicy
from email_service.services.runtime import Runtime

log = logging.getLogger(__name__)
# Deliveries queued per dispatch tick: the rest wait for the next tick (seconds later).
DISPATCH_BATCH = 500


def dispatch_webhooks(runtime: Runtime) -> dict[str, Any]:
    """Turn new changes into deliveries and queue every delivery that is due."""
    made = dispatch.fan_out_all(runtime.db)
    config = dispatch.config_from(runtime.settings)
    due = dispatch.claim_due(runtime.db, DISPATCH_BATCH, config)
    assert runtime.queue is not None
    for delivery_id in due:
        runtime.queue.enqueue(
            "deliver_webhook",
            f"webhook-{delivery_id}-{uuid.uuid4().hex[:8]}",
            delivery_id=str(delivery_id),
        )
    return {"made": made, "queued": len(due)}


def deliver_webhook(runtime: Runtime, delivery_id: str) -> dict[str, Any]:
    """One attempt of one delivery."""
    state = dispatch.deliver(
        runtime.db,
        runtime.vault,
        WebhookPolicy.from_entries(runtime.settings.allowed_webhook_hosts),
        uuid.UUID(delivery_id),
        dispatch.config_from(runtime.settings),
    )
    return {"state": state}


def prune_change_log(runtime: Runtime) -> dict[str, Any]:
    """Delete change-log rows older than CHANGE_LOG_RETENTION_HOURS."""
    retention = timedelta(hours=runtime.settings.change_log_retention_hours)
    with runtime.db.operator_session("change log: prune every tenant's old rows") as session:
        deleted = feed.prune(session, retention)
    if deleted:
        log.info("change log pruned", extra={"rows": deleted})
    return {"deleted": deleted}
