"""API tokens: HS256 JWTs (RFC 7519) that name the tenants a caller may act for.

Claims: ``sub`` (who), ``tenants`` (list of tenant ids; a single ``tenant`` string is
accepted too), ``exp`` (required), ``iat``/``nbf`` (checked when present), ``aud``/``iss``
(required and checked when the service is configured with them). Only HS256 is
accepted, so ``alg: none`` and RS/HS confusion fail; PyJWT >= 2.12 refuses unknown
``crit`` extensions (RFC 7515 §4.1.11).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

import jwt

from email_service.errors import AuthError, ValidationError

ALGORITHM = "HS256"
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A day: long enough for a dev session, short enough that a leaked token expires.
DEFAULT_TTL = 24 * 3600
MAX_TTL = 366 * 24 * 3600


@dataclass(frozen=True)
class Principal:
    """Who called, and for which tenants."""

    subject: str
    tenants: frozenset[str]


def mint(
    secret: str,
    tenants: list[str],
    subject: str = "cli",
    ttl: int = DEFAULT_TTL,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """Sign a token for ``tenants``, valid ``ttl`` seconds from now."""
    if not tenants:
        raise ValidationError("at least one tenant is required", field="tenant")
    for tenant in tenants:
        if not TENANT_RE.match(tenant):
            raise ValidationError(f"invalid tenant id {tenant!r}", field="tenant")
    if not 0 < ttl <= MAX_TTL:
        raise ValidationError(f"ttl must be between 1 and {MAX_TTL} seconds", field="ttl")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject,
        "tenants": tenants,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(
    token: str,
    secret: str,
    audience: str | None = None,
    issuer: str | None = None,
    leeway: int = 30,
) -> Principal:
    """Check signature and claims; return the principal or raise AuthError."""
    required = ["exp"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": required, "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token not yet valid") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    return Principal(subject=str(claims.get("sub", "")), tenants=_tenants(claims))


def _tenants(claims: dict[str, object]) -> frozenset[str]:
    raw = claims.get("tenants", claims.get("tenant"))
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values:
        raise AuthError("invalid token: no tenants claim")
    if not all(isinstance(t, str) and TENANT_RE.match(t) for t in values):
        raise AuthError("invalid token: malformed tenants claim")
    return frozenset(values)
