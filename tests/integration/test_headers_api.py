"""GET /api/messages/{id}/headers, and the parsed list fields of the message detail, on a
message synced from the real Dovecot, both backends."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from email_service.services.sync.run import run_sync
from tests.conftest import TENANT_A, TENANT_B
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login

pytestmark = pytest.mark.dovecot

NEWSLETTER = (
    b"Received: from mx.news.example by mx.example.test; Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    b"Authentication-Results: mx.example.test; dkim=pass header.d=news.example\r\n"
    b"From: News <news@news.example>\r\nTo: reader@example.test\r\n"
    b"Subject: This week\r\nMessage-ID: <weekly-1@news.example>\r\n"
    b"List-Id: <weekly.news.example>\r\n"
    b"List-Unsubscribe: <mailto:leave@news.example>, <https://news.example/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Precedence: bulk\r\n\r\nHello.\r\n"
)


def test_headers_in_order_with_the_list_fields_parsed(
    client: Any, as_tenant: Any, runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    with imap_login(dovecot, mail_user) as imap:
        append(imap, "INBOX", NEWSLETTER)
    account = register(runtime, TENANT_A, dovecot, mail_user)
    run_sync(runtime, TENANT_A, account, owner=uuid.uuid4().hex)
    [message] = client.get("/api/messages", headers=as_tenant(TENANT_A)).get_json()["items"]
    url = f"/api/messages/{message['id']}/headers"
    body = client.get(url, headers=as_tenant(TENANT_A)).get_json()
    names = [field["name"] for field in body["headers"]]
    assert names[:3] == ["Received", "Authentication-Results", "From"]
    assert names[-1] == "Precedence" and len(names) == 10
    assert body["parsed"] == {
        "unsubscribe_http": ["https://news.example/u/1"],
        "unsubscribe_mailto": ["mailto:leave@news.example"],
        "one_click": True,
        "list_id": "weekly.news.example",
        "auto_submitted": None,
        "precedence": "bulk",
        "authentication_results": ["mx.example.test; dkim=pass header.d=news.example"],
    }
    detail = client.get(f"/api/messages/{message['id']}", headers=as_tenant(TENANT_A))
    assert detail.get_json()["list_headers"] == body["parsed"]  # the same, from the row
    foreign = client.get(url, headers=as_tenant(TENANT_B))
    assert foreign.status_code == 404
    assert foreign.mimetype == "application/problem+json"
