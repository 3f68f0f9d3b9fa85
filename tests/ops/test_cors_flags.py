"""CORS from CORS_ORIGINS (exact origins, credentials never with the wildcard, preflight
without a token), the ENABLE_* feature flags, and the request body cap."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from email_service.app import create_app
from email_service.jobs.queues import CeleryQueue, EmbeddedQueue
from email_service.services.sync import schedule as sync_jobs
from email_service.store import migrate
from tests.conftest import REDIS_URL, TENANT_A, bearer

ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,x-tenant-id",
}


def _client(sqlite_settings: Any, **extra: Any) -> Any:
    app = create_app(sqlite_settings(**extra), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    return app.test_client()


def test_preflight_from_a_listed_origin_needs_no_token(sqlite_settings: Any) -> None:
    client = _client(sqlite_settings, cors_origins=[ORIGIN, "localhost:3000"])
    response = client.options("/api/accounts", headers={"Origin": ORIGIN, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "x-tenant-id"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert "Origin" in response.headers.get("Vary", "")
    for scheme in ("http", "https"):  # "host:port" entries mean both schemes
        origin = f"{scheme}://localhost:3000"
        again = client.options("/api/accounts", headers={"Origin": origin, **PREFLIGHT})
        assert again.headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.com.evil.example",  # a listed origin as a prefix
        "https://appXexample.com",  # '.' must not act as a regex wildcard
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com:8443",  # another port too
        "null",
    ],
)
def test_other_origins_get_no_cors_headers(sqlite_settings: Any, origin: str) -> None:
    client = _client(sqlite_settings, cors_origins=[ORIGIN])
    response = client.options("/api/accounts", headers={"Origin": origin, **PREFLIGHT})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers
    simple = client.get("/api/accounts", headers={"Origin": origin, **bearer("default")})
    assert "Access-Control-Allow-Origin" not in simple.headers


def test_actual_requests_and_errors_carry_cors_headers(sqlite_settings: Any) -> None:
    client = _client(sqlite_settings, cors_origins=[ORIGIN])
    ok = client.get(
        "/api/accounts", headers={"Origin": ORIGIN, **bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    )
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-ID" in ok.headers["Access-Control-Expose-Headers"]
    refused = client.get("/api/accounts", headers={"Origin": ORIGIN})
    assert refused.status_code == 401  # a browser can read the problem
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_wildcard_never_comes_with_credentials(sqlite_settings: Any) -> None:
    client = _client(sqlite_settings, cors_origins=["*"])
    response = client.options(
        "/api/accounts", headers={"Origin": "https://any.example", **PREFLIGHT}
    )
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_requests_without_origin_get_what_flask_cors_gives_them(sqlite_settings: Any) -> None:
    headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    listed = _client(sqlite_settings, cors_origins=[ORIGIN]).get("/api/accounts", headers=headers)
    assert listed.status_code == 200
    assert not [k for k, _ in listed.headers.items() if k.startswith("Access-Control-")]
    assert "Origin" not in listed.headers.get("Vary", "")
    # With "*" flask-cors answers every request, an Origin or not: its hook still runs.
    anyone = _client(sqlite_settings, cors_origins=["*"]).get("/api/accounts", headers=headers)
    assert anyone.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in anyone.headers


def test_cors_is_for_the_api_only(sqlite_settings: Any) -> None:
    client = _client(sqlite_settings, cors_origins=[ORIGIN])
    assert (
        "Access-Control-Allow-Origin"
        not in client.get("/health", headers={"Origin": ORIGIN}).headers
    )


# --- feature flags -----------------------------------------------------------------------


def test_enable_imap_sync_false_refuses_triggers(sqlite_settings: Any) -> None:
    app = create_app(sqlite_settings(enable_imap_sync=False), configure_logs=False)
    runtime = app.extensions["email_service"]
    migrate.upgrade(runtime.db.engine)
    headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    response = app.test_client().post(f"/api/sync/imap/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 503
    assert "ENABLE_IMAP_SYNC" in response.get_json()["detail"]
    assert sync_jobs.trigger_due(runtime) == 0  # beat queues nothing either


@pytest.mark.parametrize(("enabled", "queue"), [(True, CeleryQueue), (False, EmbeddedQueue)])
def test_enable_celery_tasks_chooses_the_queue(
    sqlite_settings: Any, enabled: bool, queue: type
) -> None:
    settings = sqlite_settings(redis_url=REDIS_URL, enable_celery_tasks=enabled)
    runtime = create_app(settings, configure_logs=False).extensions["email_service"]
    assert isinstance(runtime.queue, queue)


def test_request_body_over_the_cap_is_413(sqlite_settings: Any) -> None:
    client = _client(sqlite_settings, max_request_bytes=2048)
    headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    body = {"email": "big@example.com", "password": "x" * 4096}
    response = client.post("/api/accounts", json=body, headers=headers)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "body_too_large"
    small = client.post(
        "/api/accounts", json={"email": "s@example.com", "password": "pw"}, headers=headers
    )
    assert small.status_code == 201


def test_a_browser_may_ask_a_sync_trigger_to_wait_and_read_the_answer(sqlite_settings: Any) -> None:
    client = _client(sqlite_settings, cors_origins=[ORIGIN])
    preflight = client.options(
        "/api/sync/imap/1",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,prefer",
        },
    )
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "prefer" in {h.strip() for h in allowed.split(",")}
    ok = client.get(
        "/api/accounts", headers={"Origin": ORIGIN, **bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    )
    exposed = {h.strip() for h in ok.headers["Access-Control-Expose-Headers"].split(",")}
    assert "Preference-Applied" in exposed
