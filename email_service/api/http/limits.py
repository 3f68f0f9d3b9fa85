"""Rate limits (Flask-Limiter): per client IP before authentication, per tenant after it.

- Per client IP: ``RATE_LIMIT_REQUESTS_PER_MINUTE`` and ``_PER_HOUR`` over all routes
  together, checked before the token, so a client guessing tokens is limited too.
- Per tenant: ``RATE_LIMIT_TENANT_REQUESTS_PER_MINUTE``, checked after authentication, so
  only a holder of the tenant's token spends the tenant's budget.
- The client IP is the socket peer, or with ``TRUSTED_PROXIES`` = n the X-Forwarded-For
  entry n hops from the right (werkzeug's ProxyFix): entries a client adds to the left
  of what its proxies append are never read.
- Storage: Redis (``REDIS_URL``), shared by every worker and replica; memory in the
  embedded default (one process). Moving windows: never more than the limit in any
  window, also at a window's edge.
- Redis down: fail open to per-process memory limits (Flask-Limiter's in-memory fallback)
  and use Redis again once it answers; the API stays up and each process still limits.
- Exempt: ``/health`` (liveness), ``/metrics`` (the operator's, behind METRICS_TOKEN),
  the browser client's static files (``/`` and ``/web/<file>``: a page load is a dozen of
  them, and they are the same files for everyone; its sign-in and config are limited) and
  CORS preflights; ``/health/ready`` touches the database and Redis, so it is limited.
- A breach answers 429 problem+json with ``Retry-After``; every limited response carries
  ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` of the tightest limit.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from typing import Any

from apiflask import APIFlask
from flask import Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from werkzeug.middleware.proxy_fix import ProxyFix

from email_service.api.http.problems import problem
from email_service.config import Settings

EXEMPT_PATHS = frozenset({"/health", "/metrics"})
# The browser client's page and static modules (api/web.py): files, not API calls.
EXEMPT_ENDPOINTS = frozenset({"web.index", "web.asset"})
# A limit check must not hang a request thread when Redis stalls: fail over to memory fast.
REDIS_TIMEOUT_S = 1
# Exact across workers: a moving window admits at most the limit in any window.
STRATEGY = "moving-window"
EXTENSION = "email_service.limiters"
log = logging.getLogger(__name__)


def storage_uri(settings: Settings) -> str:
    """Redis when configured (REDIS_URL, else a Redis broker), memory otherwise."""
    for url in (settings.redis_url, settings.broker_url):
        if url and url.startswith(("redis://", "rediss://", "unix://")):
            return url
    return "memory://"


def client_ip() -> str:
    """The client's address (after ProxyFix, when proxies are trusted)."""
    return request.remote_addr or "unknown"


def _tenant() -> str:
    return str(g.get("tenant_id") or "")


def _exempt() -> bool:
    # A browser's CORS preflight precedes the real request, which is counted; counting both
    # would halve a browser client's budget.
    preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    return preflight or request.path in EXEMPT_PATHS or request.endpoint in EXEMPT_ENDPOINTS


def _limiter(settings: Settings, prefix: str, limit: ApplicationLimit) -> Limiter:
    uri = storage_uri(settings)
    options: dict[str, str | int] = {}
    if not uri.startswith("memory"):
        options = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S}
    limiter = Limiter(
        client_ip,
        application_limits=[limit],
        storage_uri=uri,
        storage_options=options,
        strategy=STRATEGY,
        key_prefix=f"email-service:{prefix}",
        headers_enabled=False,  # written once by _headers, for the tighter of both limiters
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        request_identifier=lambda: request.endpoint or "unmatched",  # 404s count too
        enabled=settings.rate_limit_enabled,
    )
    limiter.request_filter(_exempt)
    return limiter


def trust_proxies(app: APIFlask, hops: int, allow: list[str]) -> None:
    """Take the client IP and scheme from X-Forwarded-* set by ``hops`` trusted proxies,
    when the socket peer is one of them (``FORWARDED_ALLOW_IPS``); anyone else's
    X-Forwarded-* is ignored and the peer is the client."""
    if hops > 0:
        app.wsgi_app = _FromProxies(app.wsgi_app, hops, allow)  # type: ignore[method-assign]


class _FromProxies:
    """ProxyFix for requests whose socket peer is in the proxy networks; as-is otherwise."""

    def __init__(self, app: Any, hops: int, allow: list[str]) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops)
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in allow]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            peer = ipaddress.ip_address(str(environ.get("REMOTE_ADDR", "")).split("%", 1)[0])
        except ValueError:
            return self.app(environ, start_response)
        if any(peer in net for net in self.networks if net.version == peer.version):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)


def guard_ip(app: APIFlask, settings: Settings) -> None:
    """Install the per-IP limits; call before the authentication hook is registered."""
    per_ip = ApplicationLimit(
        f"{settings.rate_limit_requests_per_minute}/minute;"
        f"{settings.rate_limit_requests_per_hour}/hour",
        key_function=client_ip,
        error_message="too many requests from this client address",
    )
    limiter = _limiter(settings, "ip", per_ip)
    limiter.init_app(app)
    app.extensions[EXTENSION] = [limiter]
    app.register_error_handler(RateLimitExceeded, _too_many)
    if settings.rate_limit_enabled:  # switched off, there is nothing to tell the client
        app.after_request(_headers)


def guard_tenant(app: APIFlask, settings: Settings) -> None:
    """Install the per-tenant limit; call after the authentication hook is registered."""
    per_tenant = ApplicationLimit(
        f"{settings.rate_limit_tenant_requests_per_minute}/minute",
        key_function=_tenant,
        exempt_when=lambda: not _tenant(),
        error_message="too many requests for this tenant",
    )
    limiter = _limiter(settings, "tenant", per_tenant)
    limiter.init_app(app)
    app.extensions[EXTENSION].append(limiter)


def _limits() -> list[RequestLimit]:
    found = []
    for limiter in current_app.extensions.get(EXTENSION, []):
        current = limiter.current_limit
        if current is not None:
            found.append(current)
    return found


def _tightest() -> RequestLimit | None:
    limits = _limits()
    breached = [item for item in limits if item.breached]
    if breached:
        return breached[0]
    return min(limits, key=lambda item: item.remaining, default=None)


def _rate_headers(current: RequestLimit) -> dict[str, str]:
    reset = current.reset_at
    headers = {
        "X-RateLimit-Limit": str(current.limit.amount),
        "X-RateLimit-Remaining": str(0 if current.breached else current.remaining),
        "X-RateLimit-Reset": str(reset),
    }
    if current.breached:
        headers["Retry-After"] = str(max(1, math.ceil(reset - time.time())))
    return headers


def _headers(response: Response) -> Response:
    try:
        current = _tightest()
        if current is not None:
            response.headers.update(_rate_headers(current))
    except Exception:  # storage trouble never fails a response
        log.debug("rate limit headers unavailable", exc_info=True)
    return response


def _too_many(exc: RateLimitExceeded) -> Response:
    current = _tightest()
    headers = _rate_headers(current) if current is not None else {"Retry-After": "60"}
    detail = f"{exc.description}: limit {exc.limit.limit}; retry after {headers['Retry-After']} s"
    return problem(429, detail, "rate_limited", headers=headers)
