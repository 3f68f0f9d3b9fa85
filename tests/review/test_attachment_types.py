"""Finding 8 (attachments served inline only from an allow-list; the raw download has the
attachments' CSP) and finding 2's path integer (a 20-digit attachment index is a 404),
over a message synced from the real Dovecot, on both backends."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from email_service.services.sync.run import run_sync
from tests.conftest import TENANT_A, TENANT_B
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login

pytestmark = pytest.mark.dovecot
# (maintype, subtype, served type, disposition)
CASES = [
    ("text", "ecmascript", "application/octet-stream", "attachment"),
    ("text", "xsl", "application/octet-stream", "attachment"),
    ("application", "javascript", "application/octet-stream", "attachment"),
    ("image", "svg+xml", "application/octet-stream", "attachment"),
    ("text", "css", "application/octet-stream", "attachment"),
    ("application", "x-shockwave-flash", "application/octet-stream", "attachment"),
    ("text", "vtt", "application/octet-stream", "attachment"),
    ("image", "png", "image/png", "inline"),
    ("application", "pdf", "application/pdf", "inline"),
    ("text", "plain", "text/plain", "inline"),
]
SANDBOX = "default-src 'none'; sandbox"


def _message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "zoe@example.org"
    msg["To"] = "alice@example.test"
    msg["Subject"] = "active types"
    msg["Date"] = "Mon, 05 Jan 2026 10:00:00 +0000"
    msg.set_content("see attached\n")
    for maintype, subtype, _, _ in CASES:
        msg.add_attachment(b"alert(1)", maintype=maintype, subtype=subtype, filename=f"a.{subtype}")
    return msg.as_bytes()


@pytest.fixture
def message(runtime: Any, dovecot: Any, mail_user: Any, client: Any, as_tenant: Any) -> Any:
    with imap_login(dovecot, mail_user) as imap:
        append(imap, "INBOX", _message())
    account_id = register(runtime, TENANT_A, dovecot, mail_user)
    run_sync(runtime, TENANT_A, account_id, owner="test")
    headers = as_tenant(TENANT_A)
    folders = client.get(f"/api/accounts/{account_id}/folders", headers=headers).get_json()
    inbox = next(f for f in folders["items"] if f["name"] == "INBOX")
    listed = client.get(f"/api/messages?folder_id={inbox['id']}", headers=headers).get_json()
    message_id = listed["items"][0]["id"]
    return client.get(f"/api/messages/{message_id}", headers=headers).get_json()


def test_only_allow_listed_types_are_served_as_themselves(
    client: Any, as_tenant: Any, message: Any
) -> None:
    by_name = {a["filename"]: a for a in message["attachments"]}
    for _, subtype, served, disposition in CASES:
        answer = client.get(by_name[f"a.{subtype}"]["url"], headers=as_tenant(TENANT_A))
        assert answer.status_code == 200
        assert answer.mimetype == served, subtype
        assert answer.headers["Content-Disposition"].startswith(disposition + ";"), subtype
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Content-Security-Policy"] == SANDBOX


def test_raw_download_has_the_attachment_csp(client: Any, as_tenant: Any, message: Any) -> None:
    answer = client.get(f"/api/messages/{message['id']}/raw", headers=as_tenant(TENANT_A))
    assert answer.status_code == 200
    assert answer.headers["Content-Security-Policy"] == SANDBOX
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_huge_attachment_index_is_404_not_500(client: Any, as_tenant: Any, message: Any) -> None:
    for index in ("99999999999999999999", str(2**63), str(2**31)):
        answer = client.get(
            f"/api/messages/{message['id']}/attachments/{index}", headers=as_tenant(TENANT_A)
        )
        assert answer.status_code == 404, (index, answer.get_data(as_text=True)[:200])
        assert answer.get_json()["code"] == "not_found"
    other = client.get(f"/api/messages/{message['id']}/attachments/0", headers=as_tenant(TENANT_B))
    assert other.status_code == 404
