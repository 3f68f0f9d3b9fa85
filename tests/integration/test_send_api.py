"""POST /api/send and /api/send/raw: one request to send, through the real Postfix into the
real Dovecot, on both backends, with the outbox's guarantees (idempotency, send_at).

Alice (tenant A) sends to Bob (tenant B); each tenant registered its own account.
"""

from __future__ import annotations

import base64
import email
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

import pytest

from tests.conftest import TENANT_A, TENANT_B
from tests.support.compose_api import delivered, mail_stack, wait_state

pytestmark = [pytest.mark.postfix, pytest.mark.dovecot]
Headers = Callable[[str], dict[str, str]]
BAD_FILE = {"filename": "x.bin", "data": "not base64!"}
PDF = b"%PDF-1.4\n" + secrets.token_bytes(2000)


@pytest.fixture
def stack(
    make_settings: Any, postfix: Any, dovecot: Any, as_tenant: Headers
) -> Iterator[dict[str, Any]]:
    """The app, and Alice (tenant A) and Bob (tenant B) registered with the real servers."""
    with mail_stack(make_settings(mail_ca_file=postfix.ca_file), postfix, dovecot, as_tenant) as s:
        yield s


def test_fields_and_an_inline_file_are_sent_in_one_request(
    stack: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, users, ids = stack["api"], stack["users"], stack["ids"]
    alice = as_tenant(TENANT_A)
    body = {
        "account_id": ids["alice"],
        "to": [{"email": users["bob"].email, "name": "Bob"}],
        "subject": "Quarterly report",
        "body": "Attached.",
        "files": [
            {
                "filename": "report.pdf",
                "content_type": "application/pdf",
                "data": base64.b64encode(PDF).decode(),
            }
        ],
    }
    response = api.post("/api/send", headers=alice, json=body)
    assert response.status_code == 202, response.get_json()
    queued = response.get_json()
    assert response.headers["Location"].endswith(f"/api/outbox/{queued['id']}")
    sent = wait_state(api, alice, queued["id"], "sent", "failed", "needs_reconciliation")
    assert sent["state"] == "sent", sent
    (copy,) = delivered(dovecot, users["bob"], queued["message_id"])
    message = email.message_from_bytes(copy, policy=policy.default)
    assert message["Subject"] == "Quarterly report"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == PDF
    drafts = api.get("/api/compose/drafts", headers=alice).get_json()["items"]
    assert all(d["id"] != queued["draft_id"] for d in drafts)  # sent: the draft is gone


def test_a_raw_message_goes_out_as_built_without_its_bcc(
    stack: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, users, ids = stack["api"], stack["users"], stack["ids"]
    alice = as_tenant(TENANT_A)
    bob, alice_user = users["bob"], users["alice"]
    raw = (
        f"From: Alice <{alice_user.email}>\n"
        f"To: {bob.email}\n"
        f"Bcc: {alice_user.email}\n"
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n"
        "X-Client: crm-42\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "\n"
        "Built by the client.\n"
    ).encode()
    response = api.post(
        f"/api/send/raw?account_id={ids['alice']}",
        headers={**alice, "Content-Type": "message/rfc822"},
        data=raw,
    )
    assert response.status_code == 202, response.get_json()
    queued = response.get_json()
    assert queued["subject"] == "Grüße"
    assert queued["message_id"].startswith("<") and queued["message_id"].endswith(">")
    sent = wait_state(api, alice, queued["id"], "sent", "failed", "needs_reconciliation")
    assert sent["state"] == "sent", sent
    for user in (bob, alice_user):  # To and Bcc both receive it
        (copy,) = delivered(dovecot, user, queued["message_id"])
        assert b"Bcc:" not in copy.split(b"\r\n\r\n", 1)[0]
        assert b"X-Client: crm-42\r\n" in copy
        assert copy.endswith(b"Built by the client.\r\n")
        assert b"Message-ID: " + queued["message_id"].encode() in copy


def test_a_repeated_idempotency_key_answers_the_first_send(
    stack: dict[str, Any], as_tenant: Headers
) -> None:
    api, users = stack["api"], stack["users"]
    headers = {**as_tenant(TENANT_A), "Idempotency-Key": f"crm-{secrets.token_hex(6)}"}
    body = {"to": [users["bob"].email], "subject": "Once", "body": "only once"}
    first = api.post("/api/send", headers=headers, json=body)
    again = api.post("/api/send", headers=headers, json=body)
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    outbox = api.get("/api/outbox", headers=as_tenant(TENANT_A)).get_json()["items"]
    assert [row["id"] for row in outbox if row["subject"] == "Once"] == [first.get_json()["id"]]


def test_send_at_waits_for_its_time(stack: dict[str, Any], as_tenant: Headers) -> None:
    api, users = stack["api"], stack["users"]
    later = datetime.now(UTC) + timedelta(hours=2)
    body = {"to": [users["bob"].email], "subject": "Later", "send_at": later.isoformat()}
    response = api.post("/api/send", headers=as_tenant(TENANT_A), json=body)
    assert response.status_code == 202, response.get_json()
    row = response.get_json()
    assert row["state"] == "queued" and row["attempts"] == 0
    assert datetime.fromisoformat(row["next_attempt_at"]) >= later - timedelta(seconds=1)
    raw = api.post(
        f"/api/send/raw?send_at={later.isoformat().replace('+', '%2B')}",
        headers={**as_tenant(TENANT_A), "Content-Type": "message/rfc822"},
        data=f"From: a@example.test\r\nTo: {users['bob'].email}\r\n\r\nhi\r\n".encode(),
    )
    assert raw.status_code == 202, raw.get_json()
    assert datetime.fromisoformat(raw.get_json()["next_attempt_at"]) >= later - timedelta(seconds=1)


@pytest.mark.parametrize(
    ("path", "content_type", "payload", "status", "field"),
    [
        (
            "/api/send",
            "application/json",
            {"to": ["b@example.test"], "files": [{"filename": "x.bin", "data": "not base64!"}]},
            422,
            "files.0.data",
        ),
        (
            "/api/send/raw",
            "message/rfc822",
            b"To: b@example.test\r\n\r\nno sender\r\n",
            422,
            "From",
        ),
        ("/api/send/raw", "message/rfc822", b"From: a@example.test\r\n\r\nnobody\r\n", 422, "To"),
        ("/api/send/raw", "message/rfc822", b"no header block at all", 422, "body"),
        ("/api/send/raw", "text/plain", b"From: a@example.test\r\n\r\nx\r\n", 400, "Content-Type"),
    ],
)
def test_bad_messages_are_refused_and_nothing_is_queued(
    stack: dict[str, Any],
    as_tenant: Headers,
    path: str,
    content_type: str,
    payload: Any,
    status: int,
    field: str,
) -> None:
    api = stack["api"]
    headers = {**as_tenant(TENANT_A), "Content-Type": content_type}
    kwargs = {"json": payload} if isinstance(payload, dict) else {"data": payload}
    response = api.post(path, headers=headers, **kwargs)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert field in {e["field"] for e in response.get_json().get("errors", [])}
    assert api.get("/api/outbox", headers=as_tenant(TENANT_A)).get_json()["items"] == []


def test_another_tenants_account_is_not_found(stack: dict[str, Any], as_tenant: Headers) -> None:
    api, ids = stack["api"], stack["ids"]
    body = {"account_id": ids["bob"], "to": ["x@example.test"], "subject": "no"}
    response = api.post("/api/send", headers=as_tenant(TENANT_A), json=body)
    assert response.status_code == 404
    raw = api.post(
        f"/api/send/raw?account_id={ids['bob']}",
        headers={**as_tenant(TENANT_A), "Content-Type": "message/rfc822"},
        data=b"From: a@example.test\r\nTo: x@example.test\r\n\r\nx\r\n",
    )
    assert raw.status_code == 404
    for tenant in (TENANT_A, TENANT_B):
        assert api.get("/api/outbox", headers=as_tenant(tenant)).get_json()["items"] == []
