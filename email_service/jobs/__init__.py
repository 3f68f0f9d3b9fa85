"""Celery app and thin tasks: ids in, a service call, nothing else.

Broker and result backend come from CELERY_BROKER_URL/CELERY_RESULT_BACKEND, else
REDIS_URL. Without either (embedded default) a worker process uses a SQLite broker in
DATA_DIR. Only JSON crosses the broker: a pickled message is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from email_service.config import Settings, load_settings
from email_service.jobs import (
    event_work,
    push,
    signals,  # noqa: F401 - connects the Celery signals on import
    work,
)
from email_service.jobs.broker import transport_for
from email_service.jobs.queues import DEFER_TICK_S, CeleryQueue, EmbeddedQueue, Ticker
from email_service.services.runtime import Runtime

# An unacknowledged task (its worker was killed) comes back after this. A long sync that
# outlives it is re-delivered while running, which the per-account lock turns into a no-op;
# retry countdowns stay below it (an ETA beyond it re-runs in a loop, ECOSYSTEM.md).
VISIBILITY_TIMEOUT_S = 15 * 60
# How often beat looks for scheduled, stale or unreconciled sends (one indexed query).
SEND_TICK_S = 15.0
# How often beat prunes the change log (retention is counted in hours).
PRUNE_TICK_S = 3600.0
# How often beat pairs the words of newly stored messages: until then a phrase checks
# positions in those messages (each tick runs at most services.search.PAIR_TICK_BUDGET_S).
PAIR_TICK_S = 30.0


def broker_urls(settings: Settings) -> tuple[str, str]:
    """Broker and result backend for these settings."""
    if settings.broker_url:
        return settings.broker_url, settings.result_backend or settings.broker_url
    base = settings.data_dir.resolve()
    return (
        f"sqla+sqlite:///{base / 'celery-broker.db'}",
        f"db+sqlite:///{base / 'celery-results.db'}",
    )


def make_celery(settings: Settings | None = None, publisher: bool = False) -> Celery:
    """A Celery app configured from settings (JSON only, late acks).

    A ``publisher`` app only queues tasks and never waits for their results, so it has no
    result backend: with one, every publish subscribes to the task's result channel in
    Redis (and unsubscribes once the result handle is dropped), two round trips per task
    that nothing reads. Workers still store the results of tasks that keep them.
    """
    settings = settings or load_settings()
    broker, backend = broker_urls(settings)
    app = Celery(
        "email_service",
        broker=broker,
        backend=None if publisher else backend,
        include=["email_service.jobs.tasks"],
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],  # a pickled message is rejected, never executed
        result_accept_content=["json"],
        task_acks_late=True,  # a task is acknowledged after it ran ...
        task_reject_on_worker_lost=True,  # ... and re-queued if its worker died
        worker_prefetch_multiplier=1,  # long sync tasks: do not hoard messages
        worker_hijack_root_logger=False,  # keep our JSON logging
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_transport=transport_for(broker),  # redis://: survives a broker restart
        result_expires=24 * 3600,
        timezone="UTC",
        enable_utc=True,
        # Beat only asks "who is due?" each minute; SYNC_INTERVAL_MINUTES decides. Sends
        # are asked for more often: a scheduled send_at should not wait a minute.
        beat_schedule={
            "sync-due-accounts": {"task": "sync_due_accounts", "schedule": 60.0},
            "send-due-messages": {"task": "send_due_messages", "schedule": SEND_TICK_S},
            # deferred jobs (Drafts copies of saved drafts) are due a few seconds after
            "queue-deferred-jobs": {"task": "queue_deferred_jobs", "schedule": DEFER_TICK_S},
            "dispatch-webhooks": {
                "task": "dispatch_webhooks",
                "schedule": settings.webhook_dispatch_seconds,
            },
            "prune-change-log": {"task": "prune_change_log", "schedule": PRUNE_TICK_S},
            "index-search-pairs": {"task": "index_search_pairs", "schedule": PAIR_TICK_S},
            "sweep-blobs": {
                "task": "sweep_blobs",
                "schedule": float(settings.blob_sweep_interval_seconds),
            },
        },
    )
    return app


def wire_queue(runtime: Runtime, background: bool = False) -> None:
    """Give the runtime its job queue: Celery with a broker, else the embedded runner.

    ``background`` also starts the embedded beat (the API process of ``make run``).
    """
    settings = runtime.settings
    if settings.broker_url and settings.enable_celery_tasks:
        runtime.queue = CeleryQueue(make_celery(settings, publisher=True))
        return
    handlers: dict[str, Callable[..., Any]] = {
        "sync_imap_account": lambda job_id, account_id, tenant_id: work.sync_account(
            runtime, account_id, tenant_id, job_id
        ),
        "send_email": lambda job_id, draft_id, tenant_id: work.send_email_embedded(
            runtime, job_id, draft_id, tenant_id
        ),
        "parse_email_body": lambda job_id, message_id, tenant_id: work.parse_email_body(
            runtime, message_id, tenant_id
        ),
        "apply_message_changes": lambda job_id, account_id, tenant_id, change: work.apply_changes(
            runtime, account_id, tenant_id, change
        ),
        "apply_folder_change": lambda job_id, account_id, tenant_id, change: (
            work.apply_folder_change(runtime, account_id, tenant_id, change)
        ),
        "unsubscribe_message": lambda job_id, message_id, tenant_id, url: work.unsubscribe_message(
            runtime, message_id, tenant_id, url
        ),
        "sync_imap_folder": lambda job_id, account_id, tenant_id, folder: work.sync_folder(
            runtime, account_id, tenant_id, folder, job_id
        ),
        "store_draft_copy": lambda job_id, draft_id, tenant_id, account_id, reason="": (
            work.store_draft_copy(runtime, draft_id, tenant_id, account_id, reason)
        ),
        "deliver_webhook": lambda job_id, delivery_id: event_work.deliver_webhook(
            runtime, delivery_id
        ),
        "finish_deletions": lambda job_id, tenant_id: work.finish_deletions(runtime, tenant_id),
    }
    runtime.queue = EmbeddedQueue(handlers)
    if background:
        Ticker(60.0, lambda: work.sync_due(runtime)).start()
        Ticker(SEND_TICK_S, lambda: work.send_due(runtime)).start()
        Ticker(
            settings.webhook_dispatch_seconds, lambda: event_work.dispatch_webhooks(runtime)
        ).start()
        Ticker(PRUNE_TICK_S, lambda: event_work.prune_change_log(runtime)).start()
        Ticker(PAIR_TICK_S, lambda: work.pair_search_words(runtime)).start()
        sweep_every = float(settings.blob_sweep_interval_seconds)
        Ticker(sweep_every, lambda: work.sweep_blobs(runtime)).start()
        push.start_embedded(runtime)  # jobs run here, so does the watcher
