"""GET /api/events: Server-Sent Events from the change log, on an async server.

Streams stay open for hours, so they are served by their own process (``email-service
events``: Starlette on uvicorn, routed by nginx at ``/api/events``), never by the API's
Gunicorn threads. Authentication and tenancy are the API's: a bearer JWT (or, for
browsers' ``EventSource``, which cannot send headers, an ``access_token`` query
parameter) granting the tenant of ``X-Tenant-ID`` (or a ``tenant_id`` query parameter).
Browsers on another origin (the client of ``make run`` is on the API's port, the embedded
stream on EVENTS_PORT) are admitted by CORS: ``CORS_ORIGINS`` and the API's own loopback
origins. ``Last-Event-ID`` resumes after an event; a position the change log no longer holds is a
410 ``cannot_calculate_changes`` before the stream starts. SSE framing and heartbeats
(comment lines) are sse-starlette's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from email_service.config import Settings
from email_service.errors import (
    AuthError,
    BadRequestError,
    CannotCalculateChangesError,
    EmailServiceError,
    ForbiddenError,
)
from email_service.security import tokens
from email_service.services.events.stream import Notifier, events, start_position
from email_service.services.runtime import Runtime

PROBLEM_TYPE = "urn:email-service:problem:{code}"
STATUS = (
    (ForbiddenError, 403),
    (AuthError, 401),
    (BadRequestError, 400),
    (CannotCalculateChangesError, 410),
)
# A browser's EventSource reconnects after this many milliseconds when the stream ends.
RETRY_MS = 3000
# Hosts of the API's own address as a browser on this machine writes it (`make run`).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Seconds between attempts to listen when the embedded server's port is still taken.
EMBEDDED_REBIND_S = 2.0
log = logging.getLogger(__name__)


def _problem(request: Request, exc: EmailServiceError) -> Response:
    status = next((s for cls, s in STATUS if isinstance(exc, cls)), 400)
    body = {
        "type": PROBLEM_TYPE.format(code=exc.code),
        "title": "Error",
        "status": status,
        "detail": exc.message,
        "code": exc.code,
        "instance": request.url.path,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="email-service"'} if status == 401 else None
    return Response(
        json.dumps(body), status, headers=headers, media_type="application/problem+json"
    )


def _tenant(request: Request, settings: Settings) -> str:
    """Verify the token; return the tenant the stream is for (rules of ``api/auth.py``)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        token = request.query_params.get("access_token", "")
    if not token.strip():
        raise AuthError("missing bearer token (Authorization: Bearer <JWT>)")
    assert settings.jwt_secret is not None
    principal = tokens.verify(
        token.strip(),
        settings.jwt_secret,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway=settings.jwt_leeway,
    )
    values = request.headers.getlist(settings.tenant_id_header)
    if not values and "tenant_id" in request.query_params:
        values = [request.query_params["tenant_id"]]
    if len(values) > 1:
        raise BadRequestError(f"{settings.tenant_id_header} given more than once")
    tenant = values[0].strip() if values else settings.default_tenant_id
    if not tokens.TENANT_RE.match(tenant):
        raise BadRequestError(f"{settings.tenant_id_header} is not a tenant id")
    if tenant not in principal.tenants:
        raise ForbiddenError(f"token does not grant access to tenant {tenant!r}")
    return tenant


def _account(request: Request) -> uuid.UUID | None:
    value = request.query_params.get("account_id")
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequestError("account_id must be a UUID", field="account_id") from None


async def stream_events(request: Request) -> Response:
    """The tenant's changes as they commit, one event each, with heartbeats."""
    runtime: Runtime = request.app.state.runtime
    notifier: Notifier = request.app.state.notifier
    settings = runtime.settings
    try:
        tenant = _tenant(request, settings)
        account_id = _account(request)
        last = request.headers.get("last-event-id") or request.query_params.get("since")
        after = await asyncio.to_thread(start_position, runtime.db, tenant, last)
    except EmailServiceError as exc:
        return _problem(request, exc)

    async def source() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(comment="stream open", retry=RETRY_MS)
        async for item in events(runtime.db, notifier, tenant, after, account_id):
            yield ServerSentEvent(item.data, event=item.event, id=item.id)

    return EventSourceResponse(
        source(),
        ping=settings.events_heartbeat_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def health(_request: Request) -> Response:
    """Liveness of the events process."""
    return Response(
        json.dumps({"status": "healthy", "service": "email_service.events"}),
        media_type="application/json",
    )


def cors(settings: Settings) -> Middleware:
    """CORS for browsers reading the stream from another origin: no credentials (the
    bearer token is the credential), so only readers that hold a token get anything."""
    origins = settings.cors_origin_urls + [
        f"http://{host}:{settings.flask_port}" for host in LOOPBACK_HOSTS
    ]
    return Middleware(
        CORSMiddleware,
        allow_origins=["*"] if "*" in settings.cors_origins else origins,
        allow_methods=["GET"],
        allow_headers=["Authorization", "Last-Event-ID", settings.tenant_id_header],
        max_age=600,
    )


def create_events_app(runtime: Runtime) -> Starlette:
    """The ASGI application of the events process."""
    notifier = Notifier(runtime.db, runtime.settings.events_poll_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        poller = asyncio.create_task(notifier.run())
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    app = Starlette(
        routes=[
            Route("/api/events", stream_events, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
        middleware=[cors(runtime.settings)],
    )
    app.state.runtime = runtime
    app.state.notifier = notifier
    return app


def serve(runtime: Runtime, host: str, port: int, **uvicorn_options: Any) -> None:
    """Run the events server in this thread until it is stopped."""
    import uvicorn  # noqa: PLC0415 - only the events process needs it

    config = uvicorn.Config(
        create_events_app(runtime),
        host=host,
        port=port,
        log_config=None,  # keep the process's JSON logging
        access_log=False,
        lifespan="on",
        **uvicorn_options,
    )
    uvicorn.Server(config).run()


def embedded_wanted(settings: Settings) -> bool:
    """Whether ``serve`` runs the events server itself (EVENTS_EMBEDDED, else embedded)."""
    if settings.events_embedded is not None:
        return settings.events_embedded
    return settings.embedded


def _serve_embedded(runtime: Runtime) -> None:
    """Serve, and bind again while the port is taken: a Gunicorn worker that replaces
    another (max_requests) starts while the old one still holds the port."""
    settings = runtime.settings
    while True:
        try:
            serve(runtime, settings.events_host, settings.events_port)
        except SystemExit:  # uvicorn's answer to a failed bind
            log.warning(
                "events server could not listen; retrying", extra={"port": settings.events_port}
            )
        time.sleep(EMBEDDED_REBIND_S)


def start_embedded(runtime: Runtime) -> threading.Thread:
    """Serve events on EVENTS_HOST:EVENTS_PORT from a daemon thread of this process."""
    thread = threading.Thread(
        target=_serve_embedded, args=(runtime,), name="events-server", daemon=True
    )
    thread.start()
    return thread
