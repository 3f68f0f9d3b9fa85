"""Finding 2: request bodies are parsed only after the rate limit and the token check, with
a nesting limit; deep nesting, huge integers and huge path integers answer 4xx problems."""

from __future__ import annotations

from typing import Any

from email_service.app import create_app
from email_service.store import migrate
from tests.conftest import TENANT_A, bearer

ACCOUNTS = "/api/accounts"
MALFORMED = b'{"email": '


def _app(sqlite_settings: Any, **extra: Any) -> Any:
    app = create_app(sqlite_settings(**extra), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    return app


def _post(client: Any, body: bytes, **headers: str) -> Any:
    return client.post(ACCOUNTS, data=body, headers={"Content-Type": "application/json", **headers})


def test_unauthenticated_body_is_not_parsed(sqlite_settings: Any) -> None:
    client = _app(sqlite_settings).test_client()
    answer = _post(client, MALFORMED)
    assert answer.status_code == 401
    assert answer.get_json()["code"] == "unauthorized"


def test_rate_limited_client_body_is_not_parsed(sqlite_settings: Any) -> None:
    app = _app(sqlite_settings, rate_limit_enabled=True, rate_limit_requests_per_minute=1)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.9.8.7"
    assert client.get("/openapi.json").status_code == 200
    answer = _post(client, MALFORMED, **bearer(TENANT_A), **{"X-Tenant-ID": TENANT_A})
    assert answer.status_code == 429


def test_malformed_json_from_an_authenticated_client_is_400(sqlite_settings: Any) -> None:
    client = _app(sqlite_settings).test_client()
    answer = _post(client, MALFORMED, **bearer(TENANT_A), **{"X-Tenant-ID": TENANT_A})
    assert answer.status_code == 400
    assert answer.get_json()["code"] == "bad_request"


def test_deeply_nested_body_is_400_not_500(sqlite_settings: Any) -> None:
    client = _app(sqlite_settings).test_client()
    headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        answer = _post(client, body, **headers)
        assert answer.status_code == 400, answer.get_data(as_text=True)[:200]
        problem = answer.get_json()
        assert problem["code"] == "bad_request"
        assert "nest" in problem["detail"]


def test_moderate_nesting_is_still_json(sqlite_settings: Any) -> None:
    client = _app(sqlite_settings).test_client()
    headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    body = b'{"email": "a@example.test", "password": "x", "x": ' + b"[" * 20 + b"]" * 20 + b"}"
    answer = _post(client, body, **headers)
    assert answer.status_code == 422  # parsed; the schema refuses the unknown field


def test_integer_over_4300_digits_is_400_not_500(sqlite_settings: Any) -> None:
    client = _app(sqlite_settings).test_client()
    headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    answer = _post(client, b'{"imap_port": ' + b"9" * 5000 + b"}", **headers)
    assert answer.status_code == 400
    assert answer.get_json()["code"] == "bad_request"
