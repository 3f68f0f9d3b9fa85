"""CORS for /api/* from CORS_ORIGINS (flask-cors).

Each origin matches exactly (escaped and anchored, so ``https://app.example`` never admits
``https://app.example.evil``), and only a listed origin is echoed back, with
credentials allowed. ``*`` admits any origin without credentials: the wildcard and
credentials never go together. Preflight (OPTIONS) needs no token; the auth hook skips it.

A request without an ``Origin`` header (every non-browser client) gets no CORS headers
from a list of origins, so flask-cors' per-response work is skipped for it; with ``*``
flask-cors answers every request, and runs for all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from apiflask import APIFlask
from flask import Response, request
from flask_cors import CORS

from email_service.config import Settings

# Headers a browser client may send, and those it may read from our responses.
# Prefer: a sync trigger that waits for its job (RFC 7240), answered with Preference-Applied.
ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Prefer",
    "X-Request-ID",
]
EXPOSED_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Location",
    "Preference-Applied",
]
# Browsers cache a preflight this long (seconds); Chrome caps it at 7200.
PREFLIGHT_MAX_AGE_S = 600
WILDCARD = "*"


def exact(origin: str) -> re.Pattern[str]:
    """A pattern matching ``origin`` and nothing else (origins compare case-insensitively)."""
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)


def configure(app: APIFlask, settings: Settings) -> None:
    """Answer CORS requests to /api/* for the configured origins."""
    wildcard = WILDCARD in settings.cors_origins
    origins: str | list[re.Pattern[str]] = (
        WILDCARD if wildcard else [exact(o) for o in settings.cors_origin_urls]
    )
    CORS(
        app,
        resources={r"/api/.*": {}},
        origins=origins,
        supports_credentials=not wildcard,
        send_wildcard=wildcard,  # "*" itself, not the caller's origin echoed
        allow_headers=[*ALLOWED_HEADERS, settings.tenant_id_header],
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE_S,
        vary_header=True,
    )
    if not wildcard:
        _only_with_origin(app)


def _only_with_origin(app: APIFlask) -> None:
    """Run flask-cors' after_request hook (the one just registered) only when the request
    names an Origin: without one it adds nothing for a list of origins."""
    hooks = app.after_request_funcs[None]
    cors_after_request: Callable[[Response], Response] = hooks[-1]  # type: ignore[assignment]
    if getattr(cors_after_request, "__name__", "") != "cors_after_request":
        return  # another flask-cors: leave its hook as it is

    def with_origin(response: Response) -> Response:
        if "Origin" not in request.headers:
            return response
        return cors_after_request(response)

    hooks[-1] = with_origin
