"""Celery signals: the request id travels with a task, logs are ours, workers have metrics.

- ``before_task_publish`` (in the process that queues, e.g. the API): the log context's
  ``request_id`` and ``tenant_id`` go into the message headers.
- ``task_prerun`` (in the worker): they are bound into the log context, so a sync's log
  lines carry the request id of the API call that triggered it; ``task_postrun`` logs the
  outcome with ``duration_ms``, counts it and clears the context.
- ``setup_logging``: Celery leaves logging to the service (JSON lines, LOG_LEVEL, LOG_DIR)
  instead of installing its own handlers.
- ``worker_init`` with ``CELERY_METRICS_PORT``: the worker serves /metrics for all its pool
  processes (their samples meet in the multiprocess directory `email-service worker`
  prepared); ``worker_process_shutdown`` archives an exiting child's samples.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import structlog
from celery import signals

from email_service.config import load_settings
from email_service.observability import metrics, metrics_files
from email_service.observability.logging import configure_logging

# Message header names: prefixed, so they never shadow Celery's own request fields.
REQUEST_ID_HEADER = "email_service_request_id"
TENANT_HEADER = "email_service_tenant_id"
log = logging.getLogger(__name__)
_started: dict[str, float] = {}  # task id -> monotonic start, for duration_ms


@signals.before_task_publish.connect
def carry_context(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Put the caller's request id and tenant into the task message."""
    if headers is None:
        return
    context = structlog.contextvars.get_contextvars()
    for key, header in (("request_id", REQUEST_ID_HEADER), ("tenant_id", TENANT_HEADER)):
        if context.get(key):
            headers[header] = context[key]


@signals.task_prerun.connect
def bind_context(task_id: str, task: Any, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    """Bind the message's request id and tenant for the task's log lines."""
    request = task.request
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=getattr(request, REQUEST_ID_HEADER, None) or task_id,
        tenant_id=getattr(request, TENANT_HEADER, None) or (kwargs or {}).get("tenant_id"),
        task=task.name,
        task_id=task_id,
    )
    _started[task_id] = time.monotonic()
    log.info("task started")


@signals.task_postrun.connect
def finish_context(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    """Log and count the outcome, then forget the context."""
    started = _started.pop(task_id, None)
    duration = round((time.monotonic() - started) * 1000, 2) if started else None
    outcome = (state or "unknown").lower()
    log.info("task finished", extra={"state": outcome, "duration_ms": duration})
    metrics.count_task(task.name, outcome)
    structlog.contextvars.clear_contextvars()


@signals.setup_logging.connect
def own_logging(**_: Any) -> None:
    """JSON logs with LOG_LEVEL to stderr and LOG_DIR, as the API writes them."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_dir)


@signals.worker_init.connect
def serve_metrics(**_: Any) -> None:
    """Serve the pool's metrics on CELERY_METRICS_PORT (when set)."""
    settings = load_settings()
    if settings.celery_metrics_port and metrics_files.current() is not None:
        metrics.serve(settings.flask_host, settings.celery_metrics_port)
        log.info("worker metrics on port %d", settings.celery_metrics_port)


@signals.worker_process_shutdown.connect
def archive_metrics(**_: Any) -> None:
    """A pool child exits: keep its counts, drop its gauges."""
    metrics_files.process_exited(os.getpid())
