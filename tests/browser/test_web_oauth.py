"""Adding a mailbox through an OAuth2 provider in the browser: the client lists the
configured provider, the browser goes to the project's authorization server
(tests/servers/oauth_provider.py) and back through GET /api/oauth/callback to the client,
and the account, logged in to Dovecot by token (its oauth2 passdb), syncs. A replayed
callback comes back to the client as an error notice, worded by the client.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    BLOCKING_IMPACTS,
    OAUTH_LABEL,
    SERVER_WAIT_MS,
    Service,
    unexpected_console_errors,
)
from tests.servers.fixtures import MAIL_DOMAIN
from tests.support.mailgen import append, imap_login, make_message

pytestmark = [pytest.mark.slow, pytest.mark.dovecot, pytest.mark.postfix]


def test_add_an_account_by_signing_in_at_the_provider(
    open_client: Any, service: Service, dovecot: Any
) -> None:
    user = dovecot.add_user(f"oauth-{secrets.token_hex(4)}@{MAIL_DOMAIN}", secrets.token_hex(8))
    with imap_login(dovecot, user) as imap:  # something for the first sync to find
        append(imap, "INBOX", make_message(1))
    client = open_client()
    page = client.page
    client.sign_in("web-oauth")
    page.get_by_role("heading", name="Accounts").wait_for()
    start = page.get_by_role("button", name=f"Sign in with {OAUTH_LABEL}")
    expect(start).to_be_visible()
    client.check("17-oauth-providers")

    page.get_by_label("Address at the provider (optional)").fill(user.email)
    start.click()
    notice = page.locator(".notice.ok")
    expect(notice).to_have_text(
        f"{user.email} added; its first sync has started.", timeout=SERVER_WAIT_MS
    )
    assert page.url == f"{service.base}/#/accounts"  # the result left the address bar
    card = page.locator(".account", has_text=user.email)
    card.locator('.badge[data-state="ok"]').wait_for(timeout=SERVER_WAIT_MS)
    expect(card).to_contain_text("1 messages")
    client.check("18-oauth-added")
    (account,) = service.call("web-oauth", "GET", "/api/accounts")["items"]
    assert account["email"] == user.email and account["auth_kind"] == "oauth2"
    assert re.search(
        rf"user=<{re.escape(user.email)}>, method=(OAUTHBEARER|XOAUTH2)",
        dovecot.log_file.read_text(),
    )

    # The same redirect again (a reload of the callback): back to the client with an error.
    (callback,) = [r for r in client.requests if "/api/oauth/callback?" in r]
    page.goto(callback)
    expect(page.locator(".notice.error")).to_have_text(
        "The sign-in at the provider took too long or was already used. Start again."
    )
    expect(page.locator(".account")).to_have_count(1)
    client.check("19-oauth-error")
    assert client.page_errors == []
    assert unexpected_console_errors(client) == []
    screens = ("17-oauth-providers", "18-oauth-added", "19-oauth-error")
    figures = [client.figures[f"{service.name}-{screen}"] for screen in screens]
    assert not [f["rules"] for f in figures if any(f["counts"][i] for i in BLOCKING_IMPACTS)]

    # Another tenant has no such account, and its client offers the provider all the same.
    other = open_client()
    other.sign_in("web-oauth-b")
    other.page.get_by_role("heading", name="Accounts").wait_for()
    expect(other.page.locator(".account")).to_have_count(0)
    expect(other.page.get_by_role("button", name=f"Sign in with {OAUTH_LABEL}")).to_be_visible()
