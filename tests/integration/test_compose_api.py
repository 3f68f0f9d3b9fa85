"""/api/compose and /api/outbox over both backends, two tenants in every test.

Sending goes to a scripted aiosmtpd server on loopback; the embedded job runner sends.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import TENANT_A, TENANT_B
from tests.support.compose_api import (
    FAST_RETRIES,
    SPEC_BODY,
    add_account,
    compose,
    running_app,
    wait_state,
)
from tests.support.smtp_seam import Seam, smtp_seam

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def seam() -> Iterator[Seam]:
    with smtp_seam() as server:
        yield server


@pytest.fixture
def make_client(make_settings: Any) -> Iterator[Callable[..., FlaskClient]]:
    """An app on the test's backend with these settings (tiny back-off by default)."""
    with ExitStack() as stack:

        def build(**extra: Any) -> FlaskClient:
            settings = make_settings(**{**FAST_RETRIES, **extra})
            client, _runtime = stack.enter_context(running_app(settings))
            return client

        yield build


@pytest.fixture
def api(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()


def smtp_to(seam: Seam) -> dict[str, Any]:
    return {"smtp_port": seam.port}


@pytest.fixture
def accounts(api: FlaskClient, as_tenant: Headers, seam: Seam) -> dict[str, str]:
    return {
        TENANT_A: add_account(api, as_tenant(TENANT_A), "alice@example.test", **smtp_to(seam)),
        TENANT_B: add_account(api, as_tenant(TENANT_B), "bob@example2.test", **smtp_to(seam)),
    }


def test_spec_compose_body_makes_a_draft_of_the_first_account(
    api: FlaskClient, as_tenant: Headers, accounts: dict[str, str]
) -> None:
    draft = compose(api, as_tenant(TENANT_A))
    assert draft["account_id"] == accounts[TENANT_A]
    assert [a["email"] for a in draft["to"]] == ["recipient@example.com"]
    assert draft["cc"] == [{"email": "cc@example.com", "name": ""}]
    assert draft["bcc"][0]["email"] == "bcc@example.com"
    assert draft["subject"] == "Email Subject" and draft["body"] == "Email body text"
    assert draft["state"] == "editing" and draft["outbox_id"] is None
    listed = api.get("/api/compose/drafts", headers=as_tenant(TENANT_A)).get_json()
    assert [d["id"] for d in listed["items"]] == [draft["id"]]
    assert api.get("/api/compose/drafts", headers=as_tenant(TENANT_B)).get_json()["items"] == []


def test_another_tenants_draft_is_not_found_by_any_route(
    api: FlaskClient, as_tenant: Headers, accounts: dict[str, str]
) -> None:
    draft = compose(api, as_tenant(TENANT_A))
    other = as_tenant(TENANT_B)
    url = f"/api/compose/drafts/{draft['id']}"
    assert api.get(url, headers=other).status_code == 404
    assert api.put(url, headers=other, json={"subject": "x"}).status_code == 404
    assert api.delete(url, headers=other).status_code == 404
    assert api.post(f"/api/compose/send/{draft['id']}", headers=other).status_code == 404
    saved = api.post("/api/compose/draft", headers=other, json={"id": draft["id"]})
    assert saved.status_code == 404
    foreign_account = {"account_id": accounts[TENANT_B]}
    assert (
        api.post("/api/compose", headers=as_tenant(TENANT_A), json=foreign_account).status_code
        == 404
    )
    assert api.get(url, headers=as_tenant(TENANT_A)).get_json()["subject"] == "Email Subject"


def test_save_draft_creates_then_changes_only_given_fields(
    api: FlaskClient, as_tenant: Headers, accounts: dict[str, str]
) -> None:
    headers = as_tenant(TENANT_A)
    created = api.post(
        "/api/compose/draft",
        headers=headers,
        json={"to": [{"email": "zoe@example.test", "name": "Zoë Ünïcode"}], "subject": "v1"},
    )
    assert created.status_code == 201
    draft_id = created.get_json()["id"]
    updated = api.post(
        "/api/compose/draft", headers=headers, json={"id": draft_id, "body": "text v2"}
    )
    assert updated.status_code == 200
    body = updated.get_json()
    assert body["subject"] == "v1" and body["body"] == "text v2"
    assert body["to"] == [{"email": "zoe@example.test", "name": "Zoë Ünïcode"}]
    put = api.put(f"/api/compose/drafts/{draft_id}", headers=headers, json={"subject": "v3"})
    assert put.get_json()["subject"] == "v3" and put.get_json()["body"] == "text v2"
    assert api.delete(f"/api/compose/drafts/{draft_id}", headers=headers).status_code == 204
    assert api.get(f"/api/compose/drafts/{draft_id}", headers=headers).status_code == 404


def test_a_tenant_without_accounts_cannot_compose(api: FlaskClient, as_tenant: Headers) -> None:
    response = api.post("/api/compose", headers=as_tenant(TENANT_A), json=SPEC_BODY)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "account_id"


INJECTIONS = {
    "subject CRLF": {"subject": "Hi\r\nBcc: evil@evil.test"},
    "subject bare LF": {"subject": "Hi\nBcc: evil@evil.test"},
    "subject raw CR": {"subject": "Hi\rBcc: evil@evil.test"},
    "subject NUL": {"subject": "Hi\x00"},
    "subject RFC 2047 newline": {"subject": "=?utf-8?q?Hi=0D=0ABcc:_evil@evil.test?="},
    "subject RFC 2047 base64": {
        "subject": "=?utf-8?b?" + base64.b64encode(b"Hi\nBcc: evil@evil.test").decode() + "?="
    },
    "display name LF": {"to": [{"email": "b@example.test", "name": "Bob\nBcc: evil@evil.test"}]},
    "display name encoded": {"cc": [{"email": "c@example.test", "name": "=?utf-8?q?C=0A?="}]},
    "address CRLF": {"to": ["b@example.test\r\nBcc: evil@evil.test"]},
    "bcc address LF": {"bcc": ["b@example.test\nX: y"]},
    "address object CR": {"to": [{"email": "b@example.test\rX: y"}]},
}


@pytest.mark.parametrize("body", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_cr_lf_in_any_header_input_is_400(
    api: FlaskClient, as_tenant: Headers, accounts: dict[str, str], body: dict[str, Any]
) -> None:
    headers = as_tenant(TENANT_A)
    for route in ("/api/compose", "/api/compose/draft"):
        response = api.post(route, headers=headers, json={**SPEC_BODY, **body})
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["code"] == "header_injection"
    draft = compose(api, headers)
    put = api.put(f"/api/compose/drafts/{draft['id']}", headers=headers, json=body)
    assert put.status_code == 400
    assert (
        api.get("/api/compose/drafts", headers=headers).get_json()["items"][0]["id"] == draft["id"]
    )


def test_upload_attach_and_limits(
    make_client: Callable[..., FlaskClient], as_tenant: Headers, seam: Seam
) -> None:
    api = make_client(max_attachment_bytes=1000)
    add_account(api, as_tenant(TENANT_A), "alice@example.test", **smtp_to(seam))
    add_account(api, as_tenant(TENANT_B), "bob@example2.test", **smtp_to(seam))
    headers = as_tenant(TENANT_A)

    def upload(data: bytes, name: str, tenant: str = TENANT_A, **form: str) -> Any:
        files = {"file": (io.BytesIO(data), name, "application/pdf"), **form}
        return api.post(
            "/api/compose/attachments",
            headers=as_tenant(tenant),
            data=files,
            content_type="multipart/form-data",
        )

    ok = upload(b"%PDF-1.4 tiny", "../../etc/rapport é.pdf")
    assert ok.status_code == 201
    assert ok.get_json()["filename"] == "rapport é.pdf" and ok.get_json()["size"] == 13
    assert upload(b"x" * 1001, "big.bin").status_code == 413
    assert upload(b"x", "logo.png", content_id="logo\r\nBcc: e@e.test").status_code == 400
    foreign = upload(b"secret", "b.pdf", tenant=TENANT_B).get_json()["id"]
    draft = compose(api, headers, attachments=[ok.get_json()["id"]])
    assert [a["filename"] for a in draft["attachments"]] == ["rapport é.pdf"]
    stolen = api.put(
        f"/api/compose/drafts/{draft['id']}", headers=headers, json={"attachments": [foreign]}
    )
    assert stolen.status_code == 404
    assert api.delete(f"/api/compose/attachments/{foreign}", headers=headers).status_code == 404


def test_send_is_503_when_sending_is_disabled(
    make_client: Callable[..., FlaskClient], as_tenant: Headers, seam: Seam
) -> None:
    api = make_client(enable_smtp_send=False)
    add_account(api, as_tenant(TENANT_A), "alice@example.test", **smtp_to(seam))
    draft = compose(api, as_tenant(TENANT_A))
    response = api.post(f"/api/compose/send/{draft['id']}", headers=as_tenant(TENANT_A))
    assert response.status_code == 503 and response.get_json()["code"] == "feature_disabled"
    assert seam.data_ends == 0


def test_idempotency_key_returns_the_first_result_and_sends_once(
    api: FlaskClient, as_tenant: Headers, accounts: dict[str, str], seam: Seam
) -> None:
    headers = as_tenant(TENANT_A)
    draft = compose(api, headers)
    keyed = {**headers, "Idempotency-Key": "order-42"}
    first = api.post(f"/api/compose/send/{draft['id']}", headers=keyed)
    second = api.post(f"/api/compose/send/{draft['id']}", headers=keyed)
    assert first.status_code == second.status_code == 202
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.headers["Location"] == f"/api/outbox/{first.get_json()['id']}"
    other = compose(api, headers)
    reused = api.post(f"/api/compose/send/{other['id']}", headers=keyed)
    assert reused.status_code == 409
    sent = wait_state(api, headers, first.get_json()["id"], "sent")
    assert sent["attempts"] == 1 and sent["last_smtp_code"] == 250
    third = api.post(f"/api/compose/send/{draft['id']}", headers=keyed)
    assert third.get_json()["state"] == "sent"  # the same answer, now further along
    assert len(seam.delivered) == 1
    assert seam.delivered[0].rcpt_tos == [
        "recipient@example.com",
        "cc@example.com",
        "bcc@example.com",
    ]
    # a sent draft is gone, like in every mail client; its outbox row stays
    assert api.get(f"/api/compose/drafts/{draft['id']}", headers=headers).status_code == 404
    other_tenant = as_tenant(TENANT_B)
    assert api.get(f"/api/outbox/{sent['id']}", headers=other_tenant).status_code == 404
    assert api.get("/api/outbox", headers=other_tenant).get_json()["items"] == []
    # the same key in another tenant is another key
    draft_b = compose(api, other_tenant)
    keyed_b = {**other_tenant, "Idempotency-Key": "order-42"}
    sent_b = api.post(f"/api/compose/send/{draft_b['id']}", headers=keyed_b)
    assert sent_b.status_code == 202 and sent_b.get_json()["id"] != sent["id"]
    wait_state(api, other_tenant, sent_b.get_json()["id"], "sent")
    assert len(seam.delivered) == 2


def test_bad_idempotency_key_is_400(
    api: FlaskClient, as_tenant: Headers, accounts: dict[str, str]
) -> None:
    draft = compose(api, as_tenant(TENANT_A))
    bad = {**as_tenant(TENANT_A), "Idempotency-Key": "has space"}
    assert api.post(f"/api/compose/send/{draft['id']}", headers=bad).status_code == 400


def test_scheduled_send_can_be_cancelled_and_the_draft_edited_again(
    api: FlaskClient, as_tenant: Headers, accounts: dict[str, str], seam: Seam
) -> None:
    headers = as_tenant(TENANT_A)
    draft = compose(api, headers, send_at="2099-01-01T09:00:00Z")
    queued = api.post(f"/api/compose/send/{draft['id']}", headers=headers).get_json()
    assert queued["state"] == "queued" and queued["send_at"].startswith("2099-01-01T09:00:00")
    url = f"/api/compose/drafts/{draft['id']}"
    assert api.get(url, headers=headers).get_json()["state"] == "queued"
    assert api.put(url, headers=headers, json={"subject": "x"}).status_code == 409
    assert api.delete(url, headers=headers).status_code == 409
    cancel_url = f"/api/outbox/{queued['id']}/cancel"
    assert api.post(cancel_url, headers=as_tenant(TENANT_B)).status_code == 404
    cancelled = api.post(cancel_url, headers=headers)
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    assert api.post(cancel_url, headers=headers).status_code == 409
    assert api.put(url, headers=headers, json={"subject": "fixed"}).status_code == 200
    listed = api.get("/api/outbox?state=cancelled", headers=headers).get_json()["items"]
    assert [r["id"] for r in listed] == [queued["id"]]
    assert seam.data_ends == 0


def test_naive_send_at_is_refused(
    api: FlaskClient, as_tenant: Headers, accounts: dict[str, str]
) -> None:
    response = api.post(
        "/api/compose", headers=as_tenant(TENANT_A), json={"send_at": "2099-01-01T09:00:00"}
    )
    assert response.status_code == 422
