"""The read API over a mailbox synced from the real Dovecot, on both backends."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest

from email_service.services.sync.run import run_sync
from tests.conftest import TENANT_A, TENANT_B
from tests.support.accounts import register
from tests.support.mailgen import append, fetch_raw, imap_login, make_message

PIXEL = "https://tracker.example/p.gif"


def _rich_message(root_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = '"Zoë Example" <zoe@example.org>'
    msg["To"] = "Alice <alice@example.test>"
    msg["Cc"] = "carol@example.test"
    msg["Subject"] = "Rich message ✓"
    msg["Date"] = "Mon, 05 Jan 2026 10:00:00 +0000"
    msg["Message-ID"] = root_id
    msg.set_content("plain body line\n")
    msg.add_alternative(
        '<p onclick="steal()">Hi <b>there</b><script>alert(1)</script>'
        f'<img src="{PIXEL}" width="1" height="1"><img src="cid:logo@x"></p>',
        subtype="html",
    )
    msg.get_payload()[1].add_related(
        b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@x>"
    )
    msg.add_attachment(
        b"%PDF-1.4 data",
        maintype="application",
        subtype="pdf",
        filename="../../etc/passwd résumé.pdf",
    )
    return msg.as_bytes()


def _reply(parent_id: str, i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.test"
    msg["To"] = "zoe@example.org"
    msg["Subject"] = "Re: Rich message ✓"
    msg["Date"] = f"Mon, 05 Jan 2026 1{i}:30:00 +0000"
    msg["Message-ID"] = make_msgid(idstring=f"reply{i}", domain="example.test")
    msg["In-Reply-To"] = parent_id
    msg["References"] = parent_id
    msg.set_content(f"reply {i}\n")
    return msg.as_bytes()


@pytest.fixture
def synced(runtime: Any, dovecot: Any, mail_user: Any) -> dict[str, Any]:
    root_id = make_msgid(idstring="root", domain="example.org")
    with imap_login(dovecot, mail_user) as client:
        client.create('"Sent"')
        for i in range(7):
            append(client, "INBOX", make_message(i), "\\Seen" if i < 3 else "")
        rich_uid = append(client, "INBOX", _rich_message(root_id))
        append(client, "Sent", _reply(root_id, 1), "\\Seen")
        raw = fetch_raw(client, "INBOX", rich_uid)
    account_id = register(runtime, TENANT_A, dovecot, mail_user)
    run_sync(runtime, TENANT_A, account_id, owner="test")
    return {
        "account_id": str(account_id),
        "raw": raw,
        "root_id": root_id,
        "user": mail_user,
        "dovecot": dovecot,
    }


def _inbox(client: Any, headers: dict[str, str], account_id: str) -> dict[str, Any]:
    folders = client.get(f"/api/accounts/{account_id}/folders", headers=headers).get_json()
    return next(f for f in folders["items"] if f["role"] == "inbox")


def _rich(client: Any, headers: dict[str, str], folder_id: str) -> dict[str, Any]:
    page = client.get(
        "/api/messages", query_string={"folder_id": folder_id, "limit": 50}, headers=headers
    ).get_json()
    summary = next(m for m in page["items"] if m["subject"] == "Rich message ✓")
    return dict(client.get(f"/api/messages/{summary['id']}", headers=headers).get_json())


def test_folders_with_roles_and_counts(client: Any, as_tenant: Any, synced: Any) -> None:
    folders = client.get(
        f"/api/accounts/{synced['account_id']}/folders", headers=as_tenant(TENANT_A)
    ).get_json()["items"]
    by_role = {f["role"]: f for f in folders}
    assert folders[0]["role"] == "inbox"
    assert (by_role["inbox"]["message_count"], by_role["inbox"]["unread_count"]) == (8, 5)
    assert by_role["sent"]["message_count"] == 1


def test_list_pages_newest_first_and_filters(client: Any, as_tenant: Any, synced: Any) -> None:
    headers = as_tenant(TENANT_A)
    inbox = _inbox(client, headers, synced["account_id"])
    seen_ids: list[str] = []
    dates: list[str] = []
    cursor = None
    while True:
        query = {"folder_id": inbox["id"], "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/messages", query_string=query, headers=headers).get_json()
        seen_ids += [m["id"] for m in page["items"]]
        dates += [m["received_date"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen_ids) == len(set(seen_ids)) == 8
    assert dates == sorted(dates, reverse=True)
    unread = client.get(
        "/api/messages", query_string={"folder_id": inbox["id"], "seen": "false"}, headers=headers
    ).get_json()["items"]
    assert len(unread) == 5 and not any(m["seen"] for m in unread)
    too_big = client.get("/api/messages", query_string={"limit": 501}, headers=headers)
    assert too_big.status_code == 422


def test_message_detail_is_sanitized_with_attachments(
    client: Any, as_tenant: Any, synced: Any
) -> None:
    headers = as_tenant(TENANT_A)
    message = _rich(client, headers, _inbox(client, headers, synced["account_id"])["id"])
    assert message["sender"] == {"name": "Zoë Example", "email": "zoe@example.org"}
    assert message["cc"] == [{"name": "", "email": "carol@example.test"}]
    assert message["text"].startswith("plain body line")
    html = message["html"]
    assert "<script" not in html and "onclick" not in html and "alert(1)" not in html
    assert f'data-remote-src="{PIXEL}"' in html and f' src="{PIXEL}"' not in html
    assert message["remote_images"] == message["remote_images_blocked"] == 1
    by_name = {a["filename"]: a for a in message["attachments"]}
    logo = next(a for a in message["attachments"] if a["content_id"])
    assert f'src="{logo["url"]}"' in html  # cid: mapped to the attachment URL
    pdf = by_name["../../etc/passwd résumé.pdf"]
    download = client.get(pdf["url"], headers=headers)
    assert download.status_code == 200
    assert download.data == b"%PDF-1.4 data"
    assert download.mimetype == "application/pdf"
    disposition = download.headers["Content-Disposition"]
    assert "/" not in disposition.replace("filename*=UTF-8''", "")
    assert "passwd" in disposition and "r%C3%A9sum%C3%A9.pdf" in disposition
    shown = client.get(
        f"/api/messages/{message['id']}", query_string={"remote_images": "true"}, headers=headers
    ).get_json()
    assert f' src="{PIXEL}"' in shown["html"] and shown["remote_images_blocked"] == 0


def test_raw_is_the_servers_bytes(client: Any, as_tenant: Any, synced: Any) -> None:
    headers = as_tenant(TENANT_A)
    message = _rich(client, headers, _inbox(client, headers, synced["account_id"])["id"])
    raw = client.get(f"/api/messages/{message['id']}/raw", headers=headers)
    assert raw.status_code == 200 and raw.mimetype == "message/rfc822"
    assert raw.data == synced["raw"]


def test_thread_spans_inbox_and_sent(client: Any, as_tenant: Any, synced: Any) -> None:
    headers = as_tenant(TENANT_A)
    message = _rich(client, headers, _inbox(client, headers, synced["account_id"])["id"])
    thread = client.get(f"/api/threads/{message['thread_id']}", headers=headers).get_json()
    subjects = [m["subject"] for m in thread["items"]]
    assert subjects == ["Rich message ✓", "Re: Rich message ✓"]
    assert len({m["folder_id"] for m in thread["items"]}) == 2
    unrelated = client.get("/api/messages", query_string={"limit": 50}, headers=headers)
    others = {m["thread_id"] for m in unrelated.get_json()["items"]} - {message["thread_id"]}
    assert len(others) == 7  # every generated message is its own conversation


def test_other_tenant_gets_404_everywhere(client: Any, as_tenant: Any, synced: Any) -> None:
    headers_a, headers_b = as_tenant(TENANT_A), as_tenant(TENANT_B)
    message = _rich(client, headers_a, _inbox(client, headers_a, synced["account_id"])["id"])
    paths = [
        f"/api/accounts/{synced['account_id']}/folders",
        f"/api/messages/{message['id']}",
        f"/api/messages/{message['id']}/raw",
        message["attachments"][0]["url"],
        f"/api/threads/{message['thread_id']}",
    ]
    for path in paths:
        response = client.get(path, headers=headers_b)
        assert response.status_code == 404, path
        assert b"Rich message" not in response.data
    assert client.get("/api/messages", headers=headers_b).get_json()["items"] == []


def test_unknown_ids(client: Any, as_tenant: Any, synced: Any) -> None:
    headers = as_tenant(TENANT_A)
    message = _rich(client, headers, _inbox(client, headers, synced["account_id"])["id"])
    for path in (
        f"/api/messages/{uuid.uuid4()}",
        f"/api/messages/{message['id']}/attachments/99",
        "/api/threads/nope",
        f"/api/accounts/{uuid.uuid4()}/folders",
    ):
        assert client.get(path, headers=headers).status_code == 404, path


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("from:zoe has:attachment", {"Rich message ✓"}),
        ('"plain body line"', {"Rich message ✓"}),
        ("filename:résumé", {"Rich message ✓"}),
        ("in:sent rich", {"Re: Rich message ✓"}),
        ("rich -in:sent", {"Rich message ✓"}),
        (
            "subject:rich OR subject:invoice",
            {"Rich message ✓", "Re: Rich message ✓", "Invoice 42 #4"},
        ),
        ("is:unread subject:invoice", {"Invoice 42 #4"}),
        ("nothing-matches-this-zzz", set()),
    ],
)
def test_search_over_synced_mail(
    client: Any, as_tenant: Any, synced: Any, query: str, expected: set[str]
) -> None:
    response = client.get(
        "/api/sync/search", query_string={"query": query, "limit": 100}, headers=as_tenant(TENANT_A)
    )
    assert response.status_code == 200, response.get_json()
    assert {m["subject"] for m in response.get_json()["items"]} == expected
    other = client.get(
        "/api/sync/search", query_string={"query": query}, headers=as_tenant(TENANT_B)
    ).get_json()
    assert other["items"] == []


@pytest.mark.parametrize(
    ("query", "position"),
    [("(from:a", 0), ("is:bogus", 3), ('subject:"open', 8), ("larger:12Q", 7)],
)
def test_search_syntax_error_points_at_the_position(
    client: Any, as_tenant: Any, query: str, position: int
) -> None:
    response = client.get(
        "/api/sync/search", query_string={"query": query}, headers=as_tenant(TENANT_A)
    )
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["code"] == "query_syntax"
    assert problem["position"] == position, problem
