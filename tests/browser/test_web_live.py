"""The client stays current without a reload: mail APPENDed to Dovecot appears in the open
list, and unread counts follow reads here and elsewhere. On the embedded stack the change
comes over the stream (GET /api/events on EVENTS_PORT) after push (IDLE/NOTIFY) synced it;
on the celery stack there is neither a stream nor a push watcher, so the test asks for the
sync and the client finds the change by polling /api/changes. A tab whose stream is cut
falls back to polling too.
"""

from __future__ import annotations

import imaplib
import re
import secrets
import urllib.error
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    SERVER_WAIT_MS,
    Client,
    Service,
    unexpected_console_errors,
    wait_until,
)
from tests.servers.fixtures import MAIL_DOMAIN
from tests.support.mailgen import append, imap_login, make_message, quote

pytestmark = [pytest.mark.slow, pytest.mark.dovecot]
OLD_MESSAGES = 3
# A page that was reloaded loses this window property.
MARK = "window.__notReloaded"


def fresh_message(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Carol <carol@example.org>"
    msg["To"] = f"someone@{MAIL_DOMAIN}"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Arrived while the list was open.\n")
    return bytes(msg)


def mailbox(service: Service, dovecot: Any, tenant: str) -> dict[str, Any]:
    """A Dovecot user with OLD_MESSAGES old unread messages, synced once; its inbox."""
    user = dovecot.add_user(f"live-{secrets.token_hex(4)}@{MAIL_DOMAIN}", "pw-live-1")
    with imap_login(dovecot, user) as imap:
        for i in range(OLD_MESSAGES):
            arrived = imaplib.Time2Internaldate(datetime(2026, 1, 1, i, tzinfo=UTC))
            assert imap.append(quote("INBOX"), None, arrived, make_message(i))[0] == "OK"
    account = service.call(
        tenant,
        "POST",
        "/api/accounts",
        {
            "email": user.email,
            "password": user.password,
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.imap_port,
            "imap_security": "none",
        },
    )
    nudge(service, tenant, account["id"], always=True)
    inbox = wait_until(lambda: stored_inbox(service, tenant, account["id"]), "the first sync")
    return {"user": user, "account": account["id"], "inbox": inbox}


def stored_inbox(service: Service, tenant: str, account_id: str) -> str | None:
    """The inbox's id once all OLD_MESSAGES are stored (push may have synced it first)."""
    folders = service.call(tenant, "GET", f"/api/accounts/{account_id}/folders")["items"]
    inbox = next((f for f in folders if f["role"] == "inbox"), None)
    if inbox is None:
        return None
    listing = service.call(tenant, "GET", f"/api/messages?folder_id={inbox['id']}")["items"]
    return str(inbox["id"]) if len(listing) == OLD_MESSAGES else None


def nudge(service: Service, tenant: str, account_id: str, always: bool = False) -> None:
    """Sync the account when nothing else will: the celery stack runs no push watcher."""
    if service.events and not always:
        return  # embedded: push hears the change and syncs the folder itself
    status = f"/api/sync/status/{account_id}"
    before = service.call(tenant, "GET", status).get("finished_at")
    try:
        service.call(tenant, "POST", f"/api/sync/imap/{account_id}")
    except urllib.error.HTTPError as refused:  # push's own sync holds the account: wait for it
        assert refused.code == 409, refused
    wait_until(
        lambda: (
            (s := service.call(tenant, "GET", status))["state"] == "ok"
            and s.get("finished_at") != before
        ),
        "the sync",
    )


def open_inbox(client: Client, service: Service, box: dict[str, Any], tenant: str) -> Any:
    client.sign_in(tenant)
    client.page.goto(f"{service.base}/#/mail/{box['account']}/{box['inbox']}")
    expect(client.page.locator(".message-row")).to_have_count(OLD_MESSAGES)
    client.page.evaluate(f"{MARK} = true")
    return client.page.locator("nav a[data-role=inbox] .count")


def test_new_mail_and_read_state_show_up_without_a_reload(
    open_client: Any, service: Service, dovecot: Any
) -> None:
    tenant = "web-live"
    box = mailbox(service, dovecot, tenant)
    client = open_client()
    page = client.page
    count = open_inbox(client, service, box, tenant)
    mode = "stream" if service.events else "poll"
    expect(page.locator("body")).to_have_attribute("data-live", mode)
    expect(page.locator("#live")).to_have_text("Live" if service.events else "Updates every 5 s")
    expect(count).to_have_text(str(OLD_MESSAGES))

    # New mail on the server: on top of the open list, and counted.
    with imap_login(dovecot, box["user"]) as imap:
        append(imap, "INBOX", fresh_message("Arrived while open"))
    nudge(service, tenant, box["account"])
    rows = page.locator(".message-row")
    expect(rows.first).to_contain_text("Arrived while open", timeout=SERVER_WAIT_MS)
    expect(rows).to_have_count(OLD_MESSAGES + 1)
    expect(page.locator(".list-end")).to_have_text(f"{OLD_MESSAGES + 1} messages")
    expect(rows.first).to_have_class(re.compile(r"\bunread\b"))
    expect(count).to_have_text(str(OLD_MESSAGES + 1))
    assert page.evaluate(MARK) is True
    client.check("14-live-new-mail")

    # Read here: the server counts it at once, and so does the side bar.
    rows.first.get_by_role("link").click()
    expect(count).to_have_text(str(OLD_MESSAGES))
    unread = {
        f["role"]: f["unread_count"]
        for f in service.call(tenant, "GET", f"/api/accounts/{box['account']}/folders")["items"]
    }
    assert unread["inbox"] == OLD_MESSAGES

    # Read elsewhere (another IMAP client): the row and the count follow.
    oldest = rows.last
    with imap_login(dovecot, box["user"]) as imap:
        imap.select(quote("INBOX"))
        assert imap.store("1", "+FLAGS", "(\\Seen)")[0] == "OK"
    nudge(service, tenant, box["account"])
    expect(count).to_have_text(str(OLD_MESSAGES - 1), timeout=SERVER_WAIT_MS)
    expect(oldest).to_have_class(re.compile(r"\bread\b"))
    assert page.evaluate(MARK) is True
    assert client.page_errors == []
    assert unexpected_console_errors(client) == []
    assert not any(client.check("15-live-read")["counts"][i] for i in ("serious", "critical"))

    # Another tenant: no account, and this one's folder is not found.
    other = open_client()
    other.sign_in("web-live-b")
    other.page.get_by_role("heading", name="Accounts").wait_for()
    expect(other.page.locator(".account")).to_have_count(0)
    other.page.goto(f"{service.base}/#/mail/{box['account']}/{box['inbox']}")
    expect(other.page.locator("#status")).to_contain_text(re.compile("not found", re.I))
    expect(other.page.locator(".message-row")).to_have_count(0)


def test_a_tab_without_the_stream_polls_for_changes(
    open_client: Any, service: Service, dovecot: Any
) -> None:
    tenant = "web-poll"
    box = mailbox(service, dovecot, tenant)
    client = open_client()
    page = client.page
    cut: list[str] = []

    def refuse(route: Any) -> None:
        cut.append(route.request.url)
        route.abort()

    page.route(re.compile(r"/api/events(\?|$)"), refuse)
    open_inbox(client, service, box, tenant)
    expect(page.locator("body")).to_have_attribute("data-live", "poll")
    assert cut  # it did try the stream first
    with imap_login(dovecot, box["user"]) as imap:
        append(imap, "INBOX", fresh_message("Found by polling"))
    nudge(service, tenant, box["account"])
    expect(page.locator(".message-row").first).to_contain_text(
        "Found by polling", timeout=SERVER_WAIT_MS
    )
    assert page.evaluate(MARK) is True
    client.check("16-live-polling")
    assert client.page_errors == []
    assert unexpected_console_errors(client, (r"ERR_FAILED",)) == []
