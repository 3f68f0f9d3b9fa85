"""/api/webhooks on both backends: CRUD, the secret shown once, SSRF guard, tenancy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TENANT_A, TENANT_B

RECEIVER = "http://127.0.0.1:9/hook"


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(allowed_webhook_hosts=["127.0.0.1"])


def _create(client: Any, headers: dict[str, str], **body: Any) -> Any:
    payload = {"url": RECEIVER, "event_types": ["message.*", "sync.failed"], **body}
    return client.post("/api/webhooks", json=payload, headers=headers)


def test_crud_and_secret_shown_once(client: Any, as_tenant: Any) -> None:
    a = as_tenant(TENANT_A)
    created = _create(client, a, description="crm")
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and body["status"] == "enabled"
    assert created.headers["Location"] == f"/api/webhooks/{body['id']}"
    fetched = client.get(f"/api/webhooks/{body['id']}", headers=a)
    assert "secret" not in fetched.get_json() and secret not in fetched.get_data(as_text=True)
    listed = client.get("/api/webhooks", headers=a).get_json()
    assert [w["id"] for w in listed["items"]] == [body["id"]]
    assert secret not in str(listed)
    patched = client.patch(
        f"/api/webhooks/{body['id']}",
        json={"event_types": ["*"], "status": "disabled"},
        headers=a,
    ).get_json()
    assert patched["event_types"] == ["*"] and patched["status"] == "disabled"
    rotated = client.post(f"/api/webhooks/{body['id']}/rotate-secret", headers=a).get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    deliveries = client.get(f"/api/webhooks/{body['id']}/deliveries", headers=a).get_json()
    assert deliveries == {"items": [], "next_cursor": None}
    assert client.delete(f"/api/webhooks/{body['id']}", headers=a).status_code == 204
    assert client.get(f"/api/webhooks/{body['id']}", headers=a).status_code == 404


def test_other_tenant_cannot_see_or_touch(client: Any, as_tenant: Any) -> None:
    a, b = as_tenant(TENANT_A), as_tenant(TENANT_B)
    hook = _create(client, a).get_json()["id"]
    assert client.get("/api/webhooks", headers=b).get_json()["items"] == []
    for method, path in (
        ("get", f"/api/webhooks/{hook}"),
        ("patch", f"/api/webhooks/{hook}"),
        ("delete", f"/api/webhooks/{hook}"),
        ("post", f"/api/webhooks/{hook}/rotate-secret"),
        ("get", f"/api/webhooks/{hook}/deliveries"),
    ):
        kwargs: dict[str, Any] = {"headers": b}
        if method == "patch":
            kwargs["json"] = {"description": "x"}
        response = getattr(client, method)(path, **kwargs)
        assert response.status_code == 404, (method, path)
    assert client.get(f"/api/webhooks/{hook}", headers=a).status_code == 200


def test_account_filter_must_be_own_account(client: Any, as_tenant: Any) -> None:
    a, b = as_tenant(TENANT_A), as_tenant(TENANT_B)
    theirs = client.post(
        "/api/accounts", json={"email": "b@example.com", "password": "pw-123456"}, headers=b
    ).get_json()["id"]
    refused = _create(client, a, account_id=theirs)
    assert refused.status_code == 422 and refused.get_json()["errors"][0]["field"] == "account_id"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://10.1.2.3/hook", "blocked_host"),
        ("http://127.0.0.2:8080/hook", "blocked_host"),
        ("ftp://127.0.0.1/hook", "validation_error"),
        ("http://user:pw@127.0.0.1/hook", "validation_error"),
    ],
)
def test_urls_pass_the_ssrf_guard(client: Any, as_tenant: Any, url: str, code: str) -> None:
    response = _create(client, as_tenant(TENANT_A), url=url)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == code


def test_unknown_event_type_refused(client: Any, as_tenant: Any) -> None:
    response = _create(client, as_tenant(TENANT_A), event_types=["message.exploded"])
    assert response.status_code == 422
    assert "message.exploded" in response.get_json()["detail"]
