"""JWT acceptance matrix: only HS256 tokens we signed, in time, for the right audience."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from email_service.errors import AuthError, ValidationError
from email_service.security import tokens

SECRET = "s" * 48


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u", "tenants": ["t1"], "iat": now, "exp": now + 300, **extra}


def test_minted_token_verifies() -> None:
    token = tokens.mint(SECRET, ["t1", "t2"], "alice", 60)
    principal = tokens.verify(token, SECRET)
    assert principal.subject == "alice"
    assert principal.tenants == {"t1", "t2"}


def test_single_tenant_claim_is_accepted() -> None:
    claims = _claims()
    del claims["tenants"]
    claims["tenant"] = "solo"
    assert tokens.verify(jwt.encode(claims, SECRET, "HS256"), SECRET).tenants == {"solo"}


def _rsa_pem() -> tuple[Any, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public


def _rejected_tokens() -> dict[str, str]:
    now = int(time.time())
    valid = jwt.encode(_claims(), SECRET, "HS256")
    head, body, sig = valid.split(".")
    key, public = _rsa_pem()
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "alg None unsigned": f"{_b64({'alg': 'None'})}.{body}.",
        "RS256 signed": jwt.encode(_claims(), key, "RS256"),
        "HS256 keyed with the RSA public key": jwt.encode(
            _claims(), public.decode()[:64] * 2, "HS256"
        ),
        "HS512": jwt.encode(_claims(), SECRET, "HS512"),
        "expired": jwt.encode(_claims(exp=now - 120), SECRET, "HS256"),
        "no exp": jwt.encode({"sub": "u", "tenants": ["t1"]}, SECRET, "HS256"),
        "future nbf": jwt.encode(_claims(nbf=now + 600), SECRET, "HS256"),
        "future iat": jwt.encode(_claims(iat=now + 600), SECRET, "HS256"),
        "unknown crit": jwt.encode(
            _claims(), SECRET, "HS256", headers={"crit": ["x-unknown"], "x-unknown": 1}
        ),
        "tampered payload": f"{head}.{_b64(_claims(tenants=['other']))}.{sig}",
        "tampered signature": f"{head}.{body}.{sig[:-4]}AAAA",
        "wrong secret": jwt.encode(_claims(), "x" * 48, "HS256"),
        "no tenants": jwt.encode({"sub": "u", "exp": now + 60}, SECRET, "HS256"),
        "tenants not a list": jwt.encode(_claims(tenants={"a": 1}), SECRET, "HS256"),
        "malformed tenant": jwt.encode(_claims(tenants=["a b"]), SECRET, "HS256"),
        "empty": "",
        "garbage": "a.b.c",
    }


@pytest.mark.parametrize("case", sorted(_rejected_tokens()))
def test_rejected(case: str) -> None:
    with pytest.raises(AuthError):
        tokens.verify(_rejected_tokens()[case], SECRET, leeway=30)


def test_audience_and_issuer_checked_when_configured() -> None:
    good = jwt.encode(_claims(aud="api", iss="idp"), SECRET, "HS256")
    assert tokens.verify(good, SECRET, audience="api", issuer="idp").tenants == {"t1"}
    for claims in (
        _claims(aud="other", iss="idp"),
        _claims(aud="api", iss="evil"),
        _claims(iss="idp"),
        _claims(aud="api"),
    ):
        with pytest.raises(AuthError):
            tokens.verify(jwt.encode(claims, SECRET, "HS256"), SECRET, audience="api", issuer="idp")


@pytest.mark.parametrize(
    ("tenants", "ttl"), [([], 60), (["bad tenant"], 60), (["t"], 0), (["t"], tokens.MAX_TTL + 1)]
)
def test_mint_refuses_bad_arguments(tenants: list[str], ttl: int) -> None:
    with pytest.raises(ValidationError):
        tokens.mint(SECRET, tenants, ttl=ttl)
