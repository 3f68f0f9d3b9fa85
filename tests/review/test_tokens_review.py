"""Findings 6 and 7: tenant ids are matched whole (no trailing newline); token lifetimes are
capped by JWT_MAX_TTL_SECONDS with numeric exp/iat/nbf, every token carries a jti, and a
jti revoked with ``email-service token --revoke`` is refused at once in the embedded default
(the database) and within ``revocation.RECHECK_S`` with Redis (REDIS_URL set), where each
process reuses Redis' "not revoked" that long."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis

from email_service.app import create_app
from email_service.errors import AuthError, ValidationError
from email_service.security import tokens
from email_service.services import revocation
from email_service.store import migrate
from tests.conftest import JWT_SECRET, REDIS_URL, TENANT_A, TENANT_B
from tests.servers.ports import free_port
from tests.servers.require import server_missing

SECRET = "s" * 48
REVIEW_REDIS = REDIS_URL.rsplit("/", 1)[0] + "/1"  # the DB number these tests may use


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "u",
        "tenants": ["t1"],
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **extra,
    }


def _verify(claims: dict[str, Any], **options: Any) -> tokens.Principal:
    return tokens.verify(jwt.encode(claims, SECRET, "HS256"), SECRET, **options)


# --- finding 6 ---------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["A\n", "tenant-a\n", "a\r\n"])
def test_tenant_with_a_trailing_newline_is_malformed(tenant: str) -> None:
    with pytest.raises(AuthError, match="malformed tenants"):
        _verify(_claims(tenants=[tenant]))
    with pytest.raises(ValidationError):
        tokens.mint(SECRET, [tenant])
    assert not tokens.valid_tenant(tenant)


# --- finding 7: lifetime and claim types ----------------------------------------------------


def test_exp_far_in_the_future_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(AuthError, match="lifetime"):
        _verify(_claims(exp=1e30))
    with pytest.raises(AuthError, match="lifetime"):
        _verify(_claims(exp=now + 24 * 3600 + 60))
    with pytest.raises(AuthError, match="lifetime"):
        _verify(_claims(exp=now + 3600), max_ttl=600)
    assert _verify(_claims(exp=now + 600), max_ttl=600).tenants == {"t1"}


@pytest.mark.parametrize(
    "claim, value",
    [("exp", "9999999999"), ("iat", "0"), ("nbf", "0"), ("exp", True), ("iat", [1])],
)
def test_time_claims_must_be_numbers(claim: str, value: Any) -> None:
    with pytest.raises(AuthError):
        _verify(_claims(**{claim: value}))


@pytest.mark.parametrize("claim", ["iat", "jti", "exp"])
def test_iat_jti_and_exp_are_required(claim: str) -> None:
    claims = _claims()
    del claims[claim]
    with pytest.raises(AuthError):
        _verify(claims)


def test_jti_must_be_a_short_string() -> None:
    for jti in (123, "", "x" * 300):
        with pytest.raises(AuthError):
            _verify(_claims(jti=jti))


def test_mint_refuses_a_ttl_over_the_cap() -> None:
    with pytest.raises(ValidationError):
        tokens.mint(SECRET, ["t1"], ttl=3601, max_ttl=3600)
    assert tokens.verify(tokens.mint(SECRET, ["t1"], ttl=3600, max_ttl=3600), SECRET, max_ttl=3600)


# --- finding 7: revocation ------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "FLASK_ENV": "development",
        "JWT_SECRET": JWT_SECRET,
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_DIR": str(tmp_path / "logs"),
        **extra,
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    program = Path(sys.executable).parent / "email-service"
    return subprocess.run(
        [str(program), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _revocation_case(settings: Any, env: dict[str, str], bound: float = 0.0) -> None:
    app = create_app(settings, configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    client = app.test_client()
    minted = _cli(env, "token", "--tenant", TENANT_A, "--tenant", TENANT_B)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    other = tokens.mint(JWT_SECRET, [TENANT_A])
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]

    def status(value: str, tenant: str = TENANT_A) -> int:
        headers = {"Authorization": f"Bearer {value}", "X-Tenant-ID": tenant}
        return int(client.get("/api/accounts", headers=headers).status_code)

    assert status(token) == 200 and status(token, TENANT_B) == 200  # now in the verified cache
    revoked = _cli(env, "token", "--revoke", jti)
    assert revoked.returncode == 0, revoked.stderr
    assert jti in revoked.stdout
    time.sleep(bound)  # the longest a process may reuse an answer from before the revocation
    answer = client.get(
        "/api/accounts", headers={"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT_A}
    )
    assert answer.status_code == 401
    assert answer.get_json()["detail"] == "token revoked"
    assert status(token, TENANT_B) == 401
    assert status(other) == 200  # another token of the same tenant is untouched
    again = _cli(env, "token", "--revoke", token)  # a whole token names its jti too
    assert again.returncode == 0 and jti in again.stdout


def test_revoked_jti_is_refused_embedded(tmp_path: Path, sqlite_settings: Any) -> None:
    settings = sqlite_settings()
    env = _env(tmp_path)
    assert str(settings.data_dir) == env["DATA_DIR"]
    _revocation_case(settings, env)


@pytest.mark.redis
def test_revoked_jti_is_refused_with_redis(tmp_path: Path, sqlite_settings: Any) -> None:
    try:
        redis.Redis.from_url(REVIEW_REDIS, socket_timeout=2).ping()
    except redis.RedisError as exc:
        server_missing(f"Redis not reachable at {REVIEW_REDIS}: {exc}")
    settings = sqlite_settings(redis_url=REVIEW_REDIS)
    env = _env(tmp_path, REDIS_URL=REVIEW_REDIS)
    _revocation_case(settings, env, bound=revocation.RECHECK_S)
    keys = redis.Redis.from_url(REVIEW_REDIS).keys("email-service:revoked:*")
    assert keys  # kept in Redis, with an expiry
    assert all(redis.Redis.from_url(REVIEW_REDIS).ttl(k) > 0 for k in keys)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _review_redis() -> redis.Redis:
    client = redis.Redis.from_url(REVIEW_REDIS, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        server_missing(f"Redis not reachable at {REVIEW_REDIS}: {exc}")
    return client


@pytest.mark.redis
def test_a_revocation_reaches_every_process_within_the_recheck_interval() -> None:
    client = _review_redis()
    clock = _Clock()
    keep = timedelta(seconds=60)
    api = revocation.RedisDenylist(REVIEW_REDIS, keep, clock=clock)  # a serving process
    cli = revocation.RedisDenylist(REVIEW_REDIS, keep)  # `token --revoke`, elsewhere
    jti, other = uuid.uuid4().hex, uuid.uuid4().hex
    assert not api.is_revoked(jti) and not api.is_revoked(other)
    cli.revoke(jti)
    clock.now += revocation.RECHECK_S / 2
    assert not api.is_revoked(jti)  # the answer from before the revocation, still fresh
    clock.now += revocation.RECHECK_S / 2
    assert api.is_revoked(jti)  # RECHECK_S after the last look: Redis is asked again
    assert not api.is_revoked(other)
    client.delete(revocation.KEY_PREFIX + jti)
    clock.now += 10 * revocation.RECHECK_S
    assert api.is_revoked(jti)  # a revoked jti stays refused in the process that saw it
    mine = uuid.uuid4().hex
    assert not api.is_revoked(mine)
    api.revoke(mine)
    assert api.is_revoked(mine)  # the revoking process refuses it at once


@pytest.mark.redis
def test_each_process_asks_redis_once_per_interval_per_jti() -> None:
    _review_redis()
    clock = _Clock()
    api = revocation.RedisDenylist(REVIEW_REDIS, timedelta(seconds=60), clock=clock)
    asked: list[tuple[Any, ...]] = []
    exists = api.client.exists
    api.client.exists = lambda *keys: asked.append(keys) or exists(*keys)  # type: ignore[method-assign]
    jti = uuid.uuid4().hex
    for _ in range(50):
        assert not api.is_revoked(jti)
    clock.now += revocation.RECHECK_S
    assert not api.is_revoked(jti)
    assert asked == [(revocation.KEY_PREFIX + jti,)] * 2


def test_redis_down_fails_open_and_remembers_nothing() -> None:
    port = free_port()  # nothing listens there
    clock = _Clock()
    api = revocation.RedisDenylist(f"redis://127.0.0.1:{port}/0", timedelta(seconds=60), clock)
    jti = uuid.uuid4().hex
    assert not api.is_revoked(jti)  # fail open, as before (logged)
    assert jti not in api.answers.passed  # so the next request asks again
    assert api.answers.refused == {}


def test_remembered_answers_are_bounded() -> None:
    answers = revocation._Answers(3)
    for n in range(5):
        answers.remember(f"p{n}", False, float(n))
        answers.remember(f"r{n}", True, float(n))
    assert list(answers.passed) == ["p2", "p3", "p4"]
    assert list(answers.refused) == ["r2", "r3", "r4"]
