"""API tokens: HS256 JWTs (RFC 7519) that name the tenants a caller may act for.

Claims: ``sub`` (who), ``tenants`` (list of tenant ids; a single ``tenant`` string is
accepted too), ``exp``, ``iat`` and ``jti`` (required), ``nbf`` (checked when present),
``aud``/``iss`` (required and checked when the service is configured with them). Only
HS256 is accepted, so ``alg: none`` and RS/HS confusion fail; PyJWT >= 2.12 refuses
unknown ``crit`` extensions (RFC 7515 §4.1.11). ``exp``, ``iat`` and ``nbf`` must be JSON
numbers, and ``exp - iat`` at most ``max_ttl`` (``JWT_MAX_TTL_SECONDS``): a token cannot
outlive the cap, so a revocation list only has to remember a ``jti`` that long.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass

import jwt

from email_service.errors import AuthError, ValidationError

ALGORITHM = "HS256"
# Matched whole (fullmatch): "$" would also match before a trailing newline.
TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A day: long enough for a dev session, short enough that a leaked token expires.
DEFAULT_TTL = 24 * 3600
# The longest lifetime (exp - iat) accepted unless the caller says otherwise.
MAX_TTL = 24 * 3600
# A jti is an opaque id (ours are 32 hex digits); bounded so a denylist key stays small.
MAX_JTI_LENGTH = 128
TIME_CLAIMS = ("exp", "iat", "nbf")
# Tokens already verified, per process: a client sends the same token with every request,
# and checking its signature and claims costs more than the rest of a small request.
VERIFIED_CACHE_SIZE = 1024


@dataclass(frozen=True)
class Principal:
    """Who called, and for which tenants."""

    subject: str
    tenants: frozenset[str]
    jti: str = ""
    expires: float = 0.0


def valid_tenant(value: str) -> bool:
    """True if ``value`` is a whole tenant id (1-64 letters, digits, '.', '_', '-')."""
    return TENANT_RE.fullmatch(value) is not None


def mint(
    secret: str,
    tenants: list[str],
    subject: str = "cli",
    ttl: int = DEFAULT_TTL,
    audience: str | None = None,
    issuer: str | None = None,
    max_ttl: int = MAX_TTL,
) -> str:
    """Sign a token for ``tenants``, valid ``ttl`` seconds (at most ``max_ttl``) from now."""
    if not tenants:
        raise ValidationError("at least one tenant is required", field="tenant")
    for tenant in tenants:
        if not valid_tenant(tenant):
            raise ValidationError(f"invalid tenant id {tenant!r}", field="tenant")
    if not 0 < ttl <= max_ttl:
        raise ValidationError(f"ttl must be between 1 and {max_ttl} seconds", field="ttl")
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


class _Verified:
    """Tokens that passed :func:`verify`, with their expiry; bounded, oldest dropped first.

    The key holds everything the verdict depends on besides the clock (the token, the
    secret, audience, issuer, leeway), so a hit is the verdict :func:`verify` would give
    again while the token has not expired: only tokens already valid (``nbf``/``iat`` in
    the past) are kept, and ``exp`` is checked on every hit.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[tuple[object, ...], tuple[Principal, float]] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple[object, ...], now: float, leeway: int) -> Principal | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        principal, expires = entry
        if now >= expires + leeway:
            with self.lock:
                self.entries.pop(key, None)
            raise AuthError("token expired")
        return principal

    def put(self, key: tuple[object, ...], principal: Principal, claims: dict[str, object]) -> None:
        expires = claims.get("exp")
        not_before = max(_number(claims.get("nbf")), _number(claims.get("iat")))
        if not isinstance(expires, int | float) or not_before > time.time():
            return
        with self.lock:
            while len(self.entries) >= self.size:
                del self.entries[next(iter(self.entries))]
            self.entries[key] = (principal, float(expires))

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


VERIFIED = _Verified(VERIFIED_CACHE_SIZE)


def verify(
    token: str,
    secret: str,
    audience: str | None = None,
    issuer: str | None = None,
    leeway: int = 30,
    max_ttl: int = MAX_TTL,
) -> Principal:
    """Check signature and claims; return the principal or raise AuthError.

    A token verified before under the same settings is answered from :data:`VERIFIED`
    (its expiry checked again), without a second signature check. Revocation is the
    caller's check (:attr:`Principal.jti`), made on every request.
    """
    key = (token, secret, audience, issuer, leeway, max_ttl)
    cached = VERIFIED.get(key, time.time(), leeway)
    if cached is not None:
        return cached
    principal, claims = _decode(token, secret, audience, issuer, leeway, max_ttl)
    VERIFIED.put(key, principal, claims)
    return principal


def unverified_jti(token: str) -> str | None:
    """The ``jti`` a token names, without checking it (to revoke a token given whole)."""
    try:
        value = jwt.decode(token, options={"verify_signature": False}).get("jti")
    except jwt.InvalidTokenError:
        return None
    return value if isinstance(value, str) else None


def _check_times(claims: dict[str, object], max_ttl: int) -> float:
    for name in TIME_CLAIMS:
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AuthError(f"invalid token: {name} must be a number")
    expires, issued = float(claims["exp"]), float(claims["iat"])  # type: ignore[arg-type]
    if expires - issued > max_ttl:
        raise AuthError(f"invalid token: lifetime (exp - iat) over {max_ttl} seconds")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise AuthError(f"invalid token: jti must be a string of 1-{MAX_JTI_LENGTH} characters")
    return expires


def _decode(
    token: str, secret: str, audience: str | None, issuer: str | None, leeway: int, max_ttl: int
) -> tuple[Principal, dict[str, object]]:
    required = ["exp", "iat", "jti"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
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
    expires = _check_times(claims, max_ttl)
    principal = Principal(
        subject=str(claims.get("sub", "")),
        tenants=_tenants(claims),
        jti=str(claims["jti"]),
        expires=expires,
    )
    return principal, claims


def _tenants(claims: dict[str, object]) -> frozenset[str]:
    raw = claims.get("tenants", claims.get("tenant"))
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values:
        raise AuthError("invalid token: no tenants claim")
    if not all(isinstance(t, str) and valid_tenant(t) for t in values):
        raise AuthError("invalid token: malformed tenants claim")
    return frozenset(values)
