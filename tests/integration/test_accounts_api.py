"""Accounts API on both backends: CRUD, defaults, tenancy, secrets at rest, bad input."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import TENANT_A, TENANT_B, bearer

PASSWORD = "S3cret-canary-7f3a9c"


def _create(client: Any, headers: dict[str, str], **body: Any) -> Any:
    payload = {"email": "alice@example.com", "password": PASSWORD, **body}
    return client.post("/api/accounts", json=payload, headers=headers)


def test_spec_example_body_uses_configured_defaults(client: Any, as_tenant: Any) -> None:
    response = _create(client, as_tenant(TENANT_A))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["email"] == "alice@example.com"
    assert body["username"] == "alice@example.com"
    assert (body["imap_host"], body["imap_port"], body["imap_security"]) == (
        "localhost",
        993,
        "ssl",
    )
    assert (body["smtp_host"], body["smtp_port"], body["smtp_security"]) == (
        "localhost",
        587,
        "starttls",
    )
    assert body["tenant_id"] == TENANT_A
    assert "password" not in body and PASSWORD not in response.get_data(as_text=True)
    assert response.headers["Location"] == f"/api/accounts/{body['id']}"


def test_full_body_round_trips(client: Any, as_tenant: Any) -> None:
    created = _create(
        client,
        as_tenant(TENANT_A),
        display_name="Alice Ö",
        username="alice",
        imap_host="127.0.0.1",
        imap_port=10143,
        imap_security="none",
        smtp_host="localhost",
        smtp_port=10025,
        smtp_security="starttls",
    ).get_json()
    fetched = client.get(f"/api/accounts/{created['id']}", headers=as_tenant(TENANT_A)).get_json()
    assert fetched == created
    assert fetched["display_name"] == "Alice Ö"
    assert (fetched["imap_port"], fetched["imap_security"]) == (10143, "none")


def test_update_changes_only_given_fields_and_rechecks_hosts(client: Any, as_tenant: Any) -> None:
    created = _create(client, as_tenant(TENANT_A)).get_json()
    url = f"/api/accounts/{created['id']}"
    updated = client.put(
        url, json={"display_name": "A", "status": "disabled"}, headers=as_tenant(TENANT_A)
    )
    assert updated.status_code == 200
    assert updated.get_json()["display_name"] == "A"
    assert updated.get_json()["status"] == "disabled"
    assert updated.get_json()["email"] == created["email"]
    blocked = client.put(url, json={"imap_host": "10.1.2.3"}, headers=as_tenant(TENANT_A))
    assert blocked.status_code == 422
    assert blocked.get_json()["code"] == "blocked_host"
    assert client.get(url, headers=as_tenant(TENANT_A)).get_json()["imap_host"] == "localhost"


def test_delete_then_gone(client: Any, as_tenant: Any) -> None:
    created = _create(client, as_tenant(TENANT_A)).get_json()
    url = f"/api/accounts/{created['id']}"
    assert client.delete(url, headers=as_tenant(TENANT_A)).status_code == 204
    assert client.get(url, headers=as_tenant(TENANT_A)).status_code == 404
    assert client.delete(url, headers=as_tenant(TENANT_A)).status_code == 404


def test_duplicate_email_conflicts_within_tenant_only(client: Any, as_tenant: Any) -> None:
    assert _create(client, as_tenant(TENANT_A)).status_code == 201
    again = _create(client, as_tenant(TENANT_A))
    assert again.status_code == 409
    assert again.get_json()["code"] == "conflict"
    assert _create(client, as_tenant(TENANT_B)).status_code == 201


def test_password_is_encrypted_at_rest(client: Any, as_tenant: Any, runtime: Any) -> None:
    created = _create(client, as_tenant(TENANT_A)).get_json()
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM email_account")).mappings().all()
    dump = repr([dict(r) for r in rows])
    assert PASSWORD not in dump
    assert len(rows) == 1 and rows[0]["password_key_id"] == runtime.vault.primary_key_id
    with runtime.db.session() as session:
        from email_service.services.accounts import account_password

        assert (
            account_password(session, TENANT_A, uuid.UUID(created["id"]), runtime.vault) == PASSWORD
        )


def test_other_tenant_sees_nothing(client: Any, as_tenant: Any) -> None:
    a = _create(client, as_tenant(TENANT_A), display_name="canary-A").get_json()
    url = f"/api/accounts/{a['id']}"
    headers_b = as_tenant(TENANT_B)
    listing = client.get("/api/accounts", headers=headers_b)
    assert listing.status_code == 200 and listing.get_json()["items"] == []
    for method, body in (("get", None), ("put", {"display_name": "x"}), ("delete", None)):
        response = getattr(client, method)(url, json=body, headers=headers_b)
        assert response.status_code == 404, method
        assert "canary-A" not in response.get_data(as_text=True)
    still = client.get(url, headers=as_tenant(TENANT_A)).get_json()
    assert still["display_name"] == "canary-A"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": "Bearer not.a.jwt"}, 401),
        ({**bearer(TENANT_A)}, 403),  # default tenant not granted
        ({**bearer(TENANT_A), "X-Tenant-ID": TENANT_B}, 403),
        ({**bearer(TENANT_A), "X-Tenant-ID": ""}, 400),
        ({**bearer(TENANT_A), "X-Tenant-ID": "a b"}, 400),
        ({**bearer(TENANT_A), "X-Tenant-ID": f"{TENANT_A}, {TENANT_B}"}, 400),
        ({**bearer(TENANT_A, secret="another-secret-" + "x" * 30), "X-Tenant-ID": TENANT_A}, 401),
    ],
)
def test_auth_and_tenant_header_matrix(client: Any, headers: dict[str, str], status: int) -> None:
    response = client.get("/api/accounts", headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_multi_tenant_token_acts_for_each(client: Any) -> None:
    both = bearer(TENANT_A, TENANT_B)
    assert _create(client, {**both, "X-Tenant-ID": TENANT_A}).status_code == 201
    listed_b = client.get("/api/accounts", headers={**both, "X-Tenant-ID": TENANT_B}).get_json()
    assert listed_b["items"] == []


def test_pagination_is_keyset_and_stable(client: Any, as_tenant: Any) -> None:
    headers = as_tenant(TENANT_A)
    ids = [_create(client, headers, email=f"u{i}@example.com").get_json()["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/accounts", query_string=query, headers=headers).get_json()
        seen += [item["id"] for item in page["items"]]
        if len(seen) == 2:  # a new account arriving mid-listing is not skipped or repeated
            ids.append(_create(client, headers, email="late@example.com").get_json()["id"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids


BAD_BODIES: list[tuple[Any, str]] = [
    ({"password": "x"}, "email"),
    ({"email": "alice@example.com"}, "password"),
    ({"email": "not-an-address", "password": "x"}, "email"),
    ({"email": 5, "password": "x"}, "email"),
    ({"email": "alice@example.com", "password": ""}, "password"),
    ({"email": "alice@example.com", "password": "x", "imap_port": "993"}, "imap_port"),
    ({"email": "alice@example.com", "password": "x", "imap_port": 70000}, "imap_port"),
    ({"email": "alice@example.com", "password": "x", "imap_security": "tls"}, "imap_security"),
    ({"email": "alice@example.com", "password": "x", "imap_host": "a b"}, "imap_host"),
    ({"email": "alice@example.com", "password": "x", "admin": True}, "admin"),
    ({"email": "alice@example.com", "password": "x", "display_name": "x" * 201}, "display_name"),
    (
        {"email": "alice@example.com", "password": "x", "display_name": "A\r\nBcc: e@x"},
        "display_name",
    ),
    ({"email": "alice@example.com\r\nBcc: e@x", "password": "x"}, "email"),
    ([], "(body)"),
    ("just a string", "(body)"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_bodies_are_4xx_naming_the_field(
    client: Any, as_tenant: Any, body: Any, field: str
) -> None:
    response = client.post("/api/accounts", json=body, headers=as_tenant(TENANT_A))
    assert 400 <= response.status_code < 500
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert {"type", "title", "status", "detail", "code"} <= problem.keys()
    assert field in [e["field"] for e in problem.get("errors", [])], problem
    assert client.get("/api/accounts", headers=as_tenant(TENANT_A)).get_json()["items"] == []


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{bad json", "application/json", 400),
        ("", "application/json", 400),
        (b"\xff\xfe{}", "application/json", 400),
        ("email=a@b.c", "application/x-www-form-urlencoded", 400),
        ("<xml/>", "text/xml", 400),
    ],
)
def test_malformed_bodies(
    client: Any, as_tenant: Any, data: Any, content_type: str, status: int
) -> None:
    response = client.post(
        "/api/accounts", data=data, content_type=content_type, headers=as_tenant(TENANT_A)
    )
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"]


def test_oversize_body_is_413(client: Any, as_tenant: Any, app: Any) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    big = '{"email": "a@example.com", "password": "' + "x" * limit + '"}'
    response = client.post(
        "/api/accounts", data=big, content_type="application/json", headers=as_tenant(TENANT_A)
    )
    assert response.status_code == 413
    assert response.get_json()["code"] == "body_too_large"


@pytest.mark.parametrize(
    "path",
    [
        "/api/accounts/not-a-uuid",
        "/api/accounts/4d2b9a1e-0000-4000-8000-000000000000",
        "/api/nothing-here",
    ],
)
def test_unknown_ids_and_routes_are_404(client: Any, as_tenant: Any, path: str) -> None:
    response = client.get(path, headers=as_tenant(TENANT_A))
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4Ijp9", "W10", "WyIyMDI2IiwieCJd"])
def test_tampered_cursor_is_422(client: Any, as_tenant: Any, cursor: str) -> None:
    response = client.get(
        "/api/accounts", query_string={"cursor": cursor}, headers=as_tenant(TENANT_A)
    )
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "cursor"


def test_wrong_method_is_405_problem(client: Any, as_tenant: Any) -> None:
    response = client.patch("/api/accounts", json={}, headers=as_tenant(TENANT_A))
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
