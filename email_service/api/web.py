"""The browser client: ``/`` and its static modules, plus a development sign-in.

The client is plain ES modules under ``email_service/web/`` (no build step) and talks to
the public ``/api/*`` routes with a bearer token like any other client. In development
``POST /web/dev-token`` mints a short-lived token for a tenant; in production it is a 403
``dev_login_disabled`` problem and the user pastes a token (an OIDC login would replace
``/web/config``'s ``login`` value and that endpoint). ``/web/config`` also tells the client
where the change stream is: this origin's ``/api/events`` (nginx routes it to the events
process), or the embedded server's EVENTS_PORT on this host (``make run``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from apiflask import APIBlueprint
from flask import Response, current_app, request, send_from_directory

from email_service.api.http.context import runtime
from email_service.api.http.problems import problem
from email_service.errors import ValidationError
from email_service.security import tokens

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# A development sign-in lasts an hour: enough to try things, short if it leaks.
DEV_TOKEN_TTL = 3600
# The page and its modules come from here only; mail is shown in a sandboxed srcdoc frame,
# which inherits this policy and narrows it further with its own (see js/message.js).
# Images may come from anywhere so "show images" can work for one message; the frame's own
# policy blocks them until then.
CSP = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob: https: http:",
    "font-src 'self' data:",
    "connect-src 'self'{events}",
    "frame-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)
# app.config key set by create_app when this process serves /api/events on EVENTS_PORT.
EVENTS_EMBEDDED = "EMAIL_SERVICE_EVENTS_EMBEDDED"
EVENTS_PATH = "/api/events"
HOST_RE = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")

bp = APIBlueprint("web", __name__, enable_openapi=False)


@bp.after_request
def _headers(response: Response) -> Response:
    events = events_origin()
    policy = "; ".join(CSP).format(events=f" {events}" if events else "")
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-cache")
    return response


def events_origin() -> str | None:
    """The embedded events server's origin on the host the browser used; None when the
    stream is on this origin."""
    if not current_app.config.get(EVENTS_EMBEDDED):
        return None
    host = urlsplit(request.host_url).hostname or ""
    if not HOST_RE.match(host):  # it goes into a header: a name or an address, nothing else
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{runtime().settings.events_port}"  # uvicorn there speaks plain HTTP


@bp.get("/")
def index() -> Response:
    """The client's single page."""
    return send_from_directory(WEB_DIR, "index.html", max_age=0)


@bp.get("/web/<path:name>")
def asset(name: str) -> Response:
    """A module, style sheet or icon of the client."""
    return send_from_directory(WEB_DIR, name, max_age=0)


@bp.get("/web/config")
def config() -> dict[str, Any]:
    """What the sign-in screen offers: a development sign-in, or a pasted token."""
    settings = runtime().settings
    development = settings.flask_env == "development"
    return {
        "login": "dev" if development else "token",
        "default_tenant": settings.default_tenant_id,
        "tenant_header": settings.tenant_id_header,
        "events_url": (events_origin() or "") + EVENTS_PATH,
    }


@bp.post("/web/dev-token")
def dev_token() -> Response | dict[str, Any]:
    """Development only: a token for one tenant, valid for ``DEV_TOKEN_TTL`` seconds."""
    settings = runtime().settings
    if settings.flask_env != "development":
        return problem(
            403,
            "the development sign-in is off in production; paste a token "
            "(`email-service token --tenant T`)",
            "dev_login_disabled",
        )
    body = request.get_json(silent=True)
    tenant = body.get("tenant") if isinstance(body, dict) else None
    if not isinstance(tenant, str) or not tokens.TENANT_RE.match(tenant):
        raise ValidationError("tenant must be 1-64 letters, digits, '.', '_' or '-'", "tenant")
    assert settings.jwt_secret is not None
    token = tokens.mint(
        settings.jwt_secret,
        [tenant],
        subject="web-dev",
        ttl=DEV_TOKEN_TTL,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    return {"token": token, "tenant": tenant, "expires_in": DEV_TOKEN_TTL}
