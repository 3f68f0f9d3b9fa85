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
    return {"sub": "u", "tenants": ["t1"], "iat": now, "exp": now + 300, "jti": "j1", **extra}


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


class _CountingDecode:
    """jwt.decode that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = jwt.decode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


@pytest.fixture
def decode(monkeypatch: pytest.MonkeyPatch) -> _CountingDecode:
    tokens.VERIFIED.clear()
    counting = _CountingDecode()
    monkeypatch.setattr(tokens.jwt, "decode", counting)
    return counting


def test_a_token_verified_once_is_not_checked_again(decode: _CountingDecode) -> None:
    token = tokens.mint(SECRET, ["t1"], "alice", 60)
    first = tokens.verify(token, SECRET)
    assert tokens.verify(token, SECRET) == first
    assert decode.calls == 1


def test_a_cached_token_is_refused_once_expired(
    decode: _CountingDecode, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tokens.mint(SECRET, ["t1"], "alice", 60)
    tokens.verify(token, SECRET, leeway=5)
    later = time.time() + 66
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(AuthError, match="expired"):
        tokens.verify(token, SECRET, leeway=5)
    assert decode.calls == 1  # refused from the cache, not by a second check


def test_the_cache_answers_only_for_the_same_settings(decode: _CountingDecode) -> None:
    token = tokens.mint(SECRET, ["t1"], audience="api", issuer="https://issuer")
    tokens.verify(token, SECRET, audience="api", issuer="https://issuer")
    cases = {
        "other secret": {"secret": "x" * 48, "audience": "api", "issuer": "https://issuer"},
        "other audience": {"secret": SECRET, "audience": "web", "issuer": "https://issuer"},
        "other issuer": {"secret": SECRET, "audience": "api", "issuer": "https://other"},
    }
    for case, settings in cases.items():
        with pytest.raises(AuthError):
            tokens.verify(token, **settings)
        assert decode.calls > 1, case


def test_a_token_not_yet_valid_is_not_cached(decode: _CountingDecode) -> None:
    token = jwt.encode(_claims(nbf=int(time.time()) + 10), SECRET, "HS256")
    tokens.verify(token, SECRET, leeway=30)  # inside the leeway: accepted, not remembered
    tokens.verify(token, SECRET, leeway=30)
    assert decode.calls == 2


def test_the_cache_is_bounded(decode: _CountingDecode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens.VERIFIED, "size", 3)
    minted = [tokens.mint(SECRET, ["t1"], f"user{n}", 60) for n in range(5)]
    for token in minted:
        tokens.verify(token, SECRET)
    assert len(tokens.VERIFIED.entries) == 3
    tokens.verify(minted[0], SECRET)  # the oldest was dropped: checked again
    assert decode.calls == 6
