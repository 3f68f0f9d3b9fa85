"""Bearer JWT on every ``/api/*`` request, then the tenant the request acts for.

The tenant is the ``TENANT_ID_HEADER`` header (``X-Tenant-ID``) or ``DEFAULT_TENANT_ID``;
it must be one of the token's tenants, else 403. A malformed header value (including a
header sent twice, which arrives comma-joined) is a 400.
"""

from __future__ import annotations

import structlog
from flask import g, request

from email_service.api.http.context import runtime
from email_service.errors import AuthError, BadRequestError, ForbiddenError
from email_service.security import tokens
from email_service.store import scope

API_PREFIX = "/api/"
# Reached by a browser redirect from an OAuth2 provider, which carries no token of ours.
PUBLIC_PATHS = frozenset({"/api/oauth/callback"})


def authenticate() -> None:
    """before_request hook: verify the token and pick the tenant for /api/* requests."""
    if not request.path.startswith(API_PREFIX) or request.method == "OPTIONS":
        return
    if request.path in PUBLIC_PATHS and "Authorization" not in request.headers:
        return  # the OAuth2 provider's redirect: its single-use state names the tenant
    rt = runtime()
    settings = rt.settings
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing bearer token (Authorization: Bearer <JWT>)")
    assert settings.jwt_secret is not None
    principal = tokens.verify(
        token.strip(),
        settings.jwt_secret,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway=settings.jwt_leeway,
        max_ttl=settings.jwt_max_ttl_seconds,
    )
    if rt.revoked is not None and rt.revoked.is_revoked(principal.jti):
        raise AuthError("token revoked")
    tenant = _requested_tenant(settings.tenant_id_header, settings.default_tenant_id)
    if tenant not in principal.tenants:
        raise ForbiddenError(f"token does not grant access to tenant {tenant!r}")
    g.principal = principal
    g.tenant_id = tenant
    scope.enter(scope.for_tenant(tenant))  # row-level security: hooks.end_scope leaves it
    structlog.contextvars.bind_contextvars(tenant_id=tenant)  # on every later log line


def _requested_tenant(header_name: str, default: str) -> str:
    # One value at most: WSGI servers join a header sent twice with commas (refused
    # below), so the environ's value is the only one (no walk over all headers).
    given = request.headers.get(header_name)
    if given is None:
        return default
    value = given.strip()
    if not tokens.valid_tenant(value):
        raise BadRequestError(
            f"{header_name} must be 1-64 letters, digits, '.', '_' or '-'",
            field=header_name,
            location="header",
        )
    return value
