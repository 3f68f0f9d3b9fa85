"""Token refresh across processes: 8 at once make one token request (database lease on
SQLite and PostgreSQL, Redis key with REDIS_URL); a refused grant is asked for once.

Each thread has its own Runtime (its own engine and connections), as a worker process has.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from email_service.config import OAuthProviderSettings, Settings
from email_service.errors import RemoteAuthError
from email_service.services import accounts
from email_service.services.accounts import AccountFields
from email_service.services.oauth import tokens as oauth_tokens
from email_service.services.oauth.lock import KEY_PREFIX
from email_service.services.runtime import Runtime
from email_service.store import migrate, scope
from email_service.store.models import Account
from tests.conftest import TENANT_A
from tests.integration.oauth_stack import register_client
from tests.servers.oauth_provider import OAuthProvider
from tests.servers.require import server_missing

# Redis DB set aside for these tests.
REDIS_URL = "redis://127.0.0.1:6379/3"
WORKERS = 8


@pytest.fixture(params=["database", "redis"])
def lock_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def oauth_settings(make_settings: Any, oauth_provider: OAuthProvider, lock_kind: str) -> Settings:
    client_id, secret = register_client(oauth_provider)
    extra: dict[str, Any] = {
        "oauth_providers": {
            "idp": OAuthProviderSettings(
                client_id=client_id, client_secret=secret, issuer=oauth_provider.issuer
            )
        },
        "oauth_refresh_margin_seconds": 30,
    }
    if lock_kind == "redis":
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.RedisError as exc:
            server_missing(f"Redis not reachable at {REDIS_URL}: {exc}")
        extra["redis_url"] = REDIS_URL
    settings: Settings = make_settings(**extra)
    return settings


@pytest.fixture
def runtimes(oauth_settings: Settings) -> Iterator[list[Runtime]]:
    first = Runtime.build(oauth_settings)
    migrate.upgrade(first.db.engine)
    others = [Runtime.build(oauth_settings) for _ in range(WORKERS - 1)]
    yield [first, *others]
    with first.db.session() as session:
        session.query(Account).delete()
    for runtime in (first, *others):
        runtime.db.dispose()


def _account(runtime: Runtime, provider: OAuthProvider, user: str) -> uuid.UUID:
    client_id = runtime.settings.oauth_providers["idp"].client_id
    issued = provider.issue(user, client_id)
    expired = oauth_tokens.TokenSet(
        issued.access_token, datetime(2000, 1, 1, tzinfo=UTC), issued.refresh_token
    )
    data = AccountFields(email=user, oauth=expired, oauth_provider="idp")
    with runtime.db.session() as session:
        record = accounts.create_account(session, TENANT_A, data, runtime.vault, runtime.hosts)
    return record.id


def _all_at_once(runtimes: list[Runtime], account_id: uuid.UUID) -> list[str | Exception]:
    start = threading.Barrier(len(runtimes))

    def one(runtime: Runtime) -> str | Exception:
        start.wait()
        try:
            with scope.tenant_scope(TENANT_A):  # as the tenant's jobs ask
                return oauth_tokens.access_token(runtime, account_id)
        except RemoteAuthError as exc:
            return exc

    with ThreadPoolExecutor(len(runtimes)) as pool:
        return list(pool.map(one, runtimes))


def test_eight_at_once_make_one_token_request(
    runtimes: list[Runtime], oauth_provider: OAuthProvider, lock_kind: str
) -> None:
    user = f"r-{secrets.token_hex(5)}@example.test"
    account_id = _account(runtimes[0], oauth_provider, user)
    results = _all_at_once(runtimes, account_id)
    assert oauth_provider.refreshes(user) == 1
    assert len(set(results)) == 1 and isinstance(results[0], str)
    assert oauth_provider.find_access(results[0]) is not None  # the provider's new token
    stored = oauth_tokens.unseal(runtimes[0].vault, _ciphertext(runtimes[0], account_id))
    assert stored.access_token == results[0] and not stored.due(oauth_tokens.timedelta(0))
    if lock_kind == "redis":  # released, and no token went into Redis
        client = redis.Redis.from_url(REDIS_URL)
        assert client.get(KEY_PREFIX + str(account_id)) is None
        for key in client.scan_iter():
            value = client.get(key) if client.type(key) == b"string" else b""
            assert results[0].encode() not in (value or b"")


def test_a_revoked_grant_is_asked_once_and_fails_everyone(
    runtimes: list[Runtime], oauth_provider: OAuthProvider
) -> None:
    user = f"r-{secrets.token_hex(5)}@example.test"
    account_id = _account(runtimes[0], oauth_provider, user)
    oauth_provider.revoke_user(user)
    results = _all_at_once(runtimes, account_id)
    assert all(isinstance(r, RemoteAuthError) for r in results), results
    assert oauth_provider.refreshes(user) == 1
    with runtimes[0].db.session() as session:
        row = session.get_one(Account, account_id)
        assert row.status == "auth_failed" and "invalid_grant" in (row.auth_error or "")
    with pytest.raises(RemoteAuthError):
        oauth_tokens.access_token(runtimes[1], account_id)
    assert oauth_provider.refreshes(user) == 1


def _ciphertext(runtime: Runtime, account_id: uuid.UUID) -> str:
    with runtime.db.session() as session:
        value = session.get_one(Account, account_id).oauth_ciphertext
        assert value is not None
        return value
