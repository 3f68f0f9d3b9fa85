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
# Where the WSGI environ holds it (what request.headers.get would look up).
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
# Accept a caller's id only if it is short and printable; otherwise make our own.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("email_service.http")


def start_request() -> None:
    """Bind the request id and start the clock (bodies are checked after auth: api/bodies)."""
    ctx = g._get_current_object()  # one proxy lookup, not five
    ctx.started = time.perf_counter()
    given = request.environ.get(REQUEST_ID_ENVIRON, "")
    ctx.request_id = request_id = given if REQUEST_ID_RE.match(given) else str(uuid.uuid4())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    ctx.db_scope = scope.enter(scope.NO_SCOPE)  # the auth hook sets the tenant's


def end_scope(_error: BaseException | None = None) -> None:
    """teardown_request hook: leave the request's database scope."""
    token = g.pop("db_scope", None)
    if token is not None:
        scope.leave(token)


def finish_request(response: Response) -> Response:
    """Return the request id and log one line per request."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # bound once
    ctx = g._get_current_object()
    request_id = ctx.get("request_id")
    headers = response.headers
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    started = ctx.get("started")
    seconds = time.perf_counter() - started if started else None
    tenant = ctx.get("tenant_id")
    status = response.status_code
    path = req.path
    fields = {
        "method": req.method,
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 2) if seconds is not None else None,
        "tenant_id": tenant,
    }
    log_event(log, "request", fields)
    req.environ[TENANT_ENVIRON] = tenant  # for Gunicorn's access log line
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if path.startswith("/api/"):  # tenant data: never kept by a cache on the way
        headers["Cache-Control"] = "no-store"
    metrics.record(req, status, seconds or 0.0)
    return response
