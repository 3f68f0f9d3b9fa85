"""POST /api/messages/{id}/unsubscribe: the RFC 8058 one-click POST to a real HTTPS receiver
on loopback, and the mailto: request through the real Postfix into the real Dovecot.

Alice (tenant A) gets the list mail; the mailto: address is Bob's (tenant B), so the request
is seen arriving. Bob's tenant cannot act on Alice's message.
"""

from __future__ import annotations

import email
import re
import uuid
from collections.abc import Iterator
from email import policy
from typing import Any

import pytest

from email_service.services.sync.run import run_sync
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.tls import make_tls_files
from tests.servers.wait import wait_for
from tests.servers.webhook_receiver import Receiver, webhook_receiver
from tests.support.compose_api import delivered, mail_stack, wait_state
from tests.support.mailgen import append, imap_login, make_message, quote

WAIT_S = 30


@pytest.fixture
def receiver(tmp_path: Any) -> Iterator[Receiver]:
    with webhook_receiver(make_tls_files(tmp_path / "receiver-tls")) as running:
        yield running


@pytest.fixture
def stack(
    make_settings: Any,
    postfix: Any,
    dovecot: Any,
    as_tenant: Any,
    receiver: Receiver,  # its CA is trusted below
    tmp_path: Any,
) -> Iterator[dict[str, Any]]:
    ca_file = tmp_path / "receiver-tls" / "ca.pem"
    settings = make_settings(
        mail_ca_file=postfix.ca_file,
        allowed_unsubscribe_hosts=["127.0.0.1"],
        unsubscribe_ca_file=ca_file,
    )
    with mail_stack(settings, postfix, dovecot, as_tenant) as running:
        yield running


def list_mail(i: int, unsubscribe: str, one_click: bool = True) -> bytes:
    parsed = email.message_from_bytes(make_message(i), policy=policy.default)
    parsed["List-Id"] = "News <news.example.org>"
    parsed["List-Unsubscribe"] = unsubscribe
    if one_click:
        parsed["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return parsed.as_bytes()


def _deliver(stack: dict[str, Any], dovecot: Any, raw: bytes) -> str:
    """Put ``raw`` in Alice's INBOX, sync, and return the stored message's id."""
    with imap_login(dovecot, stack["users"]["alice"]) as imap:
        append(imap, "INBOX", raw)
    run_sync(stack["runtime"], TENANT_A, uuid.UUID(stack["ids"]["alice"]), owner="test")
    items = stack["api"].get("/api/messages", headers=stack["a"]).get_json()["items"]
    subject = email.message_from_bytes(raw, policy=policy.default)["Subject"]
    return str(next(m["id"] for m in items if m["subject"] == subject))


def _flags_on_server(dovecot: Any, user: Any) -> str:
    with imap_login(dovecot, user) as imap:
        imap.select(quote("INBOX"), readonly=True)
        _, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    return " ".join(d.decode() for d in data if isinstance(d, bytes))


def _flags(stack: dict[str, Any], message_id: str) -> list[str]:
    body = stack["api"].get(f"/api/messages/{message_id}", headers=stack["a"]).get_json()
    return list(body["flags"])


@pytest.fixture
def with_headers(stack: dict[str, Any], as_tenant: Any) -> dict[str, Any]:
    return {**stack, "a": as_tenant(TENANT_A), "b": as_tenant(TENANT_B)}


def test_one_click_posts_to_the_list_and_marks_the_message(
    with_headers: dict[str, Any], dovecot: Any, receiver: Receiver
) -> None:
    stack = with_headers
    url = f"{receiver.url}/ok?u=alice&l=news"
    message_id = _deliver(stack, dovecot, list_mail(1, f"<mailto:x@example.test>, <{url}>"))
    api = stack["api"]
    foreign = api.post(f"/api/messages/{message_id}/unsubscribe", json={}, headers=stack["b"])
    assert foreign.status_code == 404
    response = api.post(f"/api/messages/{message_id}/unsubscribe", json={}, headers=stack["a"])
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["method"] == "one_click" and body["target"] == url and body["job_id"]
    assert receiver.wait_for(lambda: bool(receiver.on("/ok?u=alice&l=news")), WAIT_S)
    (request,) = receiver.on("/ok?u=alice&l=news")
    assert request.body == b"List-Unsubscribe=One-Click"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "cookie" not in request.headers and "authorization" not in request.headers
    wait_for(lambda: "$Unsubscribed" in _flags(stack, message_id), "the record", WAIT_S)
    alice = stack["users"]["alice"]
    wait_for(lambda: "$Unsubscribed" in _flags_on_server(dovecot, alice), "the keyword", WAIT_S)


def test_mailto_sends_the_request_from_the_account(
    with_headers: dict[str, Any], dovecot: Any, receiver: Receiver
) -> None:
    stack = with_headers
    bob = stack["users"]["bob"]
    uri = f"mailto:{bob.email}?subject=unsubscribe%20news&body=please%20remove%20me"
    message_id = _deliver(stack, dovecot, list_mail(2, f"<{uri}>", one_click=False))
    api = stack["api"]
    url = f"/api/messages/{message_id}/unsubscribe"
    refused = api.post(url, json={"method": "one_click"}, headers=stack["a"])
    assert refused.status_code == 422  # not offered: no List-Unsubscribe-Post
    response = api.post(url, json={}, headers=stack["a"])
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["method"] == "mailto" and body["outbox_id"] and body["job_id"] is None
    again = api.post(url, json={"method": "mailto"}, headers=stack["a"]).get_json()
    assert again["outbox_id"] == body["outbox_id"]  # asked twice, sent once
    sent = wait_state(api, stack["a"], body["outbox_id"], "sent", "failed")
    assert sent["state"] == "sent", sent
    (copy,) = delivered(dovecot, bob, sent["message_id"])
    arrived = email.message_from_bytes(copy, policy=policy.default)
    assert arrived["Subject"] == "unsubscribe news"
    assert stack["users"]["alice"].email in arrived["From"]
    assert "please remove me" in arrived.get_body(("plain",)).get_content()
    wait_for(lambda: "$Unsubscribed" in _flags(stack, message_id), "the record", WAIT_S)
    assert receiver.requests == []


def test_private_hosts_need_the_allow_list(
    make_settings: Any, postfix: Any, dovecot: Any, as_tenant: Any, receiver: Receiver
) -> None:
    settings = make_settings(mail_ca_file=postfix.ca_file)  # no ALLOWED_UNSUBSCRIBE_HOSTS
    with mail_stack(settings, postfix, dovecot, as_tenant) as running:
        stack = {**running, "a": as_tenant(TENANT_A)}
        url = f"{receiver.url}/ok?private"
        message_id = _deliver(stack, dovecot, list_mail(3, f"<{url}>"))
        response = stack["api"].post(
            f"/api/messages/{message_id}/unsubscribe", json={}, headers=stack["a"]
        )
        assert response.status_code == 422
        assert "ALLOWED_UNSUBSCRIBE_HOSTS" in response.get_json()["detail"]
        assert re.search("non-public", response.get_json()["detail"])
    assert receiver.requests == []


def test_a_message_without_list_unsubscribe(with_headers: dict[str, Any], dovecot: Any) -> None:
    stack = with_headers
    message_id = _deliver(stack, dovecot, make_message(4))
    url = f"/api/messages/{message_id}/unsubscribe"
    response = stack["api"].post(url, json={}, headers=stack["a"])
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "method"
