"""Per-request plumbing: request id, log context, timing."""

from __future__ import annotations

import logging
import re
import time
import uuid

import structlog
from flask import Response, g, request

from email_service.api import metrics
from email_service.observability.logging import TENANT_ENVIRON, log_event
from email_service.store import scope

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and printable; otherwise make our own.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("email_service.http")


def start_request() -> None:
    """Bind the request id and start the clock (bodies are checked after auth: api/bodies)."""
    g.started = time.perf_counter()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = given if REQUEST_ID_RE.match(given) else str(uuid.uuid4())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)
    g.db_scope = scope.enter(scope.NO_SCOPE)  # the auth hook sets the tenant's


def end_scope(_error: BaseException | None = None) -> None:
    """teardown_request hook: leave the request's database scope."""
    token = g.pop("db_scope", None)
    if token is not None:
        scope.leave(token)


def finish_request(response: Response) -> Response:
    """Return the request id and log one line per request."""
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("started")
    duration = round((time.perf_counter() - started) * 1000, 2) if started else None
    fields = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": duration,
        "tenant_id": g.get("tenant_id"),
    }
    log_event(log, "request", fields)
    request.environ[TENANT_ENVIRON] = g.get("tenant_id")  # for Gunicorn's access log line
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith("/api/"):  # tenant data: never kept by a cache on the way
        response.headers["Cache-Control"] = "no-store"
    metrics.record(response.status_code)
    return response
