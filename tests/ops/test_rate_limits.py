"""Rate limits in-process: per IP and per tenant, 429 problem+json with headers, exemptions,
X-Forwarded-For only from trusted proxies, Redis storage, and Redis down (fail open to
per-process memory limits). The limit across 4 Gunicorn workers is in
test_rate_limits_across_workers.py.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import pytest

from email_service.app import create_app
from email_service.store import migrate
from tests.conftest import REDIS_URL, TENANT_A, TENANT_B, bearer

OPEN_PATH = "/openapi.json"  # limited, no auth, no database


def _app(sqlite_settings: Any, **extra: Any) -> Any:
    values: dict[str, Any] = {"rate_limit_enabled": True, "rate_limit_requests_per_minute": 3}
    app = create_app(sqlite_settings(**{**values, **extra}), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    return app


def _client(app: Any, ip: str | None = None) -> Any:
    """A test client whose socket address is ``ip`` (unique per test: Redis keys are shared)."""
    address = ip or f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _statuses(client: Any, n: int, path: str = OPEN_PATH, **kwargs: Any) -> list[int]:
    return [client.get(path, **kwargs).status_code for _ in range(n)]


def test_per_minute_limit_answers_429_problem_with_headers(sqlite_settings: Any) -> None:
    client = _client(_app(sqlite_settings))
    ok = client.get(OPEN_PATH)
    assert ok.headers["X-RateLimit-Limit"] == "3"
    assert ok.headers["X-RateLimit-Remaining"] == "2"
    assert int(ok.headers["X-RateLimit-Reset"]) > 0
    assert _statuses(client, 3) == [200, 200, 429]
    refused = client.get(OPEN_PATH)
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    problem = refused.get_json()
    assert problem["code"] == "rate_limited" and problem["status"] == 429
    assert "client address" in problem["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-Request-ID"]


def test_per_hour_limit_counts_too(sqlite_settings: Any) -> None:
    app = _app(sqlite_settings, rate_limit_requests_per_minute=50, rate_limit_requests_per_hour=4)
    assert _statuses(_client(app), 6) == [200] * 4 + [429] * 2


def test_limit_is_per_client_address(sqlite_settings: Any) -> None:
    app = _app(sqlite_settings)
    assert _statuses(_client(app, "10.0.0.1"), 4) == [200, 200, 200, 429]
    assert _statuses(_client(app, "10.0.0.2"), 1) == [200]


def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(sqlite_settings: Any) -> None:
    client = _client(_app(sqlite_settings))
    statuses = [
        client.get(OPEN_PATH, headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(6)
    ]
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_one_trusted_proxy_reads_its_entry_not_the_clients(sqlite_settings: Any) -> None:
    """Behind one proxy (nginx appends the peer), entries the client wrote are never used."""
    app = _app(sqlite_settings, trusted_proxies=1, forwarded_allow_ips=["172.18.0.0/16"])
    proxy = _client(app, "172.18.0.5")
    spoofed = [
        proxy.get(OPEN_PATH, headers={"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.7"})
        for i in range(4)
    ]
    assert [r.status_code for r in spoofed] == [200, 200, 200, 429]
    other_client = proxy.get(OPEN_PATH, headers={"X-Forwarded-For": "203.0.113.8"})
    assert other_client.status_code == 200  # another real client behind the same proxy


def test_health_and_metrics_are_exempt(sqlite_settings: Any) -> None:
    client = _client(_app(sqlite_settings, rate_limit_requests_per_minute=1))
    for path in ("/health", "/metrics"):
        assert set(_statuses(client, 5, path)) == {200}, path
        assert "X-RateLimit-Limit" not in client.get(path).headers
    assert _statuses(client, 2) == [200, 429]


def test_the_browser_clients_static_files_are_exempt(sqlite_settings: Any) -> None:
    client = _client(_app(sqlite_settings, rate_limit_requests_per_minute=2))
    files = ("/", "/web/js/app.js", "/web/js/api.js", "/web/app.css", "/web/icon.svg")
    for path in files * 3:  # three page loads: 15 files against a limit of 2
        answer = client.get(path)
        assert answer.status_code == 200 and "X-RateLimit-Limit" not in answer.headers, path
    assert client.get("/web/config").headers["X-RateLimit-Remaining"] == "1"  # counted
    assert _statuses(client, 2) == [200, 429]  # the budget the files left untouched


def test_unknown_paths_count_against_the_limit(sqlite_settings: Any) -> None:
    client = _client(_app(sqlite_settings))
    assert _statuses(client, 3, "/no-such-page") == [404, 404, 404]
    assert client.get(OPEN_PATH).status_code == 429


def test_failed_authentication_counts_against_the_ip_limit(sqlite_settings: Any) -> None:
    client = _client(_app(sqlite_settings))
    bad = {"Authorization": "Bearer not-a-token"}
    assert _statuses(client, 4, "/api/accounts", headers=bad) == [401, 401, 401, 429]


def test_tenant_limit_holds_across_addresses_and_spares_other_tenants(
    sqlite_settings: Any,
) -> None:
    app = _app(
        sqlite_settings, rate_limit_requests_per_minute=100, rate_limit_tenant_requests_per_minute=3
    )
    a = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    statuses = [_client(app).get("/api/accounts", headers=a).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = _client(app).get("/api/accounts", headers=a)
    assert "tenant" in refused.get_json()["detail"]
    assert refused.headers["X-RateLimit-Limit"] == "3" and refused.headers["Retry-After"]
    b = {**bearer(TENANT_B), "X-Tenant-ID": TENANT_B}
    assert _client(app).get("/api/accounts", headers=b).status_code == 200


def test_tenant_budget_is_spent_only_by_a_verified_token(sqlite_settings: Any) -> None:
    app = _app(
        sqlite_settings, rate_limit_requests_per_minute=100, rate_limit_tenant_requests_per_minute=2
    )
    forged = {"Authorization": "Bearer forged", "X-Tenant-ID": TENANT_A}
    assert set(_statuses(_client(app), 5, "/api/accounts", headers=forged)) == {401}
    a = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    assert _statuses(_client(app), 2, "/api/accounts", headers=a) == [200, 200]


def test_disabled_means_no_limit_and_no_headers(sqlite_settings: Any) -> None:
    client = _client(_app(sqlite_settings, rate_limit_enabled=False))
    assert set(_statuses(client, 10)) == {200}
    assert "X-RateLimit-Limit" not in client.get(OPEN_PATH).headers


def test_cors_preflight_does_not_spend_the_budget(sqlite_settings: Any) -> None:
    client = _client(_app(sqlite_settings))
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"}
    for _ in range(5):
        assert client.options("/api/accounts", headers=preflight).status_code == 200
    assert _statuses(client, 4) == [200, 200, 200, 429]


@pytest.mark.redis
def test_redis_storage_is_shared_by_every_app_instance(sqlite_settings: Any) -> None:
    """Two app instances (two Gunicorn workers, two replicas) spend one budget in Redis."""
    ip = f"10.{uuid.uuid4().int % 250}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    first = _client(_app(sqlite_settings, redis_url=REDIS_URL), ip)
    second = _client(_app(sqlite_settings, redis_url=REDIS_URL), ip)
    assert _statuses(first, 2) == [200, 200]
    assert _statuses(second, 2) == [200, 429]
    assert _statuses(first, 1) == [429]


def test_redis_down_fails_open_to_per_process_limits(
    sqlite_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on port 1: requests are still answered, and still limited."""
    app = _app(sqlite_settings, redis_url="redis://127.0.0.1:1/0")
    client = _client(app)
    assert _statuses(client, 4) == [200, 200, 200, 429]
    assert any("falling back to in-memory" in r.getMessage() for r in caplog.records)
    assert client.get("/health").status_code == 200
