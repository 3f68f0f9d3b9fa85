"""The web client in headless Chromium against the running service, Dovecot and Postfix.

One walk through what a person does: sign in, add an account and watch its first sync,
read an HTML message with an attachment (remote image blocked until asked for), search,
reply with an attachment and see the reply arrive in Dovecot; the same screens at 360 px;
a second tenant sees none of it. Then a hostile message: nothing runs, nothing loads.
"""

from __future__ import annotations

import email
import imaplib
import re
import secrets
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    BLOCKING_IMPACTS,
    SERVER_WAIT_MS,
    Canary,
    Service,
    unexpected_console_errors,
    wait_until,
)
from tests.servers.fixtures import MAIL_DOMAIN
from tests.support.mailgen import append, imap_login, make_message, quote

pytestmark = [pytest.mark.slow, pytest.mark.dovecot, pytest.mark.postfix]
# The list's page size in the client (js/mailbox.js): more plain messages than that.
PAGE = 50
PLAIN_MESSAGES = 54
CSV = b"quarter,revenue\nQ1,100\nQ2,140\n"
SUBJECT = "Quarterly figures with chart"
# How long the hostile message is left open after it loaded and was clicked.
SETTLE_MS = 1500


def html_message(sender: Any, recipient: Any, canary: Canary) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Bob Example <{sender.email}>"
    msg["To"] = f"Alice <{recipient.email}>"
    msg["Subject"] = SUBJECT
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=MAIL_DOMAIN)
    msg.set_content("Hello Alice, the figures are attached.\n")
    msg.add_alternative(
        "<html><body><p>Hello <b>Alice</b>, the quarterly figures are attached.</p>"
        f'<p><img src="{canary.url}/pixel.gif" alt="tracking pixel" width="1" height="1"></p>'
        '<table border="1"><tr><td>Q1</td><td>100</td></tr></table></body></html>',
        subtype="html",
    )
    msg.add_attachment(CSV, maintype="text", subtype="csv", filename="figures.csv")
    return msg.as_bytes()


def fill_account_form(page: Any, user: Any, dovecot: Any, postfix: Any) -> None:
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_label("Display name (optional)").fill("Alice")
    page.get_by_text("Server settings").click()
    page.get_by_label("IMAP host").fill("127.0.0.1")
    page.get_by_label("IMAP port").fill(str(dovecot.imap_port))
    page.get_by_label("IMAP security").select_option("none")
    page.get_by_label("SMTP host").fill("127.0.0.1")
    page.get_by_label("SMTP port").fill(str(postfix.submission_port))
    page.get_by_label("SMTP security").select_option("starttls")


def find_in_inbox(dovecot: Any, user: Any, subject: str) -> list[bytes]:
    with imap_login(dovecot, user) as client:
        client.select(quote("INBOX"), readonly=True)
        _typ, data = client.uid("SEARCH", "SUBJECT", f'"{subject}"')
        found = []
        for uid in data[0].split():
            _typ, parts = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            found.append(bytes(parts[0][1]))
        return found


def test_read_search_and_reply_in_the_browser(
    open_client: Any, service: Service, dovecot: Any, postfix: Any, canary: Canary
) -> None:
    alice = dovecot.add_user(f"alice-{secrets.token_hex(4)}@{MAIL_DOMAIN}", "pw-alice-1")
    bob = dovecot.add_user(f"bob-{secrets.token_hex(4)}@{MAIL_DOMAIN}", "pw-bob-1")
    with imap_login(dovecot, alice) as imap:
        for i in range(PLAIN_MESSAGES):  # older mail, so the HTML message tops the list
            arrived = imaplib.Time2Internaldate(datetime(2026, 1, 1, i // 60, i % 60, tzinfo=UTC))
            assert imap.append(quote("INBOX"), None, arrived, make_message(i))[0] == "OK"
        append(imap, "INBOX", html_message(bob, alice, canary))

    client = open_client()
    page = client.page
    page.goto(service.base + "/")
    page.get_by_label("Tenant").wait_for()
    assert not client.check("01-sign-in")["counts"]["critical"]
    page.get_by_label("Tenant").fill("web-a")
    page.get_by_role("button", name="Sign in (development)").click()

    # Accounts: add one, its first sync runs and finishes while we watch.
    page.get_by_role("heading", name="Accounts").wait_for()
    fill_account_form(page, alice, dovecot, postfix)
    page.get_by_role("button", name="Add account").click()
    card = page.locator(".account", has_text=alice.email)
    card.locator('.badge[data-state="ok"]').wait_for(timeout=SERVER_WAIT_MS)
    expect(card).to_contain_text(f"{PLAIN_MESSAGES + 1} messages")
    client.check("02-accounts")
    card.get_by_role("button", name=f"Verify {alice.email}").click()
    expect(card.locator(".verify")).to_contain_text("IMAP: OK")
    expect(card.locator(".verify")).to_contain_text("SMTP: OK")

    # Mailbox: the inbox, 50 rows, then the rest as the end of the list scrolls into view.
    card.get_by_role("link", name="Open mail").click()
    rows = page.locator(".message-row")
    expect(rows).to_have_count(PAGE)
    expect(page.locator("nav a[data-role=inbox] .count")).to_have_text(str(PLAIN_MESSAGES + 1))
    page.locator(".more").scroll_into_view_if_needed()
    expect(rows).to_have_count(PLAIN_MESSAGES + 1)
    client.check("03-mailbox")

    # The HTML message: sanitized in the sandboxed frame, remote image blocked, attachment.
    rows.filter(has_text=SUBJECT).get_by_role("link").click()
    frame = page.frame_locator("iframe.mail-frame")
    expect(frame.locator("b")).to_have_text("Alice")
    expect(page.locator(".notice")).to_contain_text("1 remote image blocked")
    assert page.locator("iframe.mail-frame").get_attribute("sandbox") == (
        "allow-popups allow-popups-to-escape-sandbox"
    )
    expect(page.locator("nav a[data-role=inbox] .count")).to_have_text(str(PLAIN_MESSAGES))
    client.check("04-message")
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile(r"Download figures\.csv")).click()
    assert download.value.suggested_filename == "figures.csv"
    assert download.value.path().read_bytes() == CSV
    assert canary.hits == []  # blocked until asked for
    page.get_by_role("button", name="Show images").click()
    wait_until(lambda: "/pixel.gif" in canary.hits, "the remote image loads once asked for")
    # Flags from the keyboard: s stars it, in the list too.
    page.locator("#message-subject").focus()
    page.keyboard.press("s")
    expect(page.locator('[data-action="star"]')).to_have_attribute("aria-pressed", "true")
    expect(rows.filter(has_text=SUBJECT)).to_have_class(re.compile(r"\bflagged\b"))

    # Forward (f): the original goes along as an attachment; discarded, no draft is left.
    page.keyboard.press("f")
    expect(page.get_by_label("Subject")).to_have_value(f"Fwd: {SUBJECT}")
    expect(page.get_by_text("The original message is attached.")).to_be_visible()
    page.get_by_role("button", name="Discard").click()
    page.get_by_role("heading", name="Outbox").wait_for()
    expect(page.get_by_role("list", name="Drafts")).to_have_text("No drafts.")

    # Move one message to Archive, delete another with #: both leave the inbox.
    page.locator("nav a[data-role=inbox]").click()
    expect(rows).to_have_count(PAGE)
    expect(rows.first).to_contain_text(SUBJECT)  # the newest
    moved, deleted = rows.nth(1).get_attribute("data-id"), rows.nth(2).get_attribute("data-id")
    rows.nth(1).get_by_role("link").click()
    page.get_by_label("Move to folder").select_option(label="Archive")
    expect(page.locator(f'.message-row[data-id="{moved}"]')).to_have_count(0)
    page.locator(f'.message-row[data-id="{deleted}"] a').click()
    expect(page.locator("article.message")).to_have_attribute("data-id", str(deleted))
    page.locator("#message-subject").focus()
    page.keyboard.press("#")
    expect(page.locator(f'.message-row[data-id="{deleted}"]')).to_have_count(0)
    account_id = service.call("web-a", "GET", "/api/accounts")["items"][0]["id"]
    roles = {
        f["role"]: f["id"]
        for f in service.call("web-a", "GET", f"/api/accounts/{account_id}/folders")["items"]
    }
    # The server moves them (a job), then the rows follow with their ids kept.
    for message_id, role in ((moved, "archive"), (deleted, "trash")):
        path = f"/api/messages/{message_id}"
        wait_until(
            lambda: service.call("web-a", "GET", path)["folder_id"] == roles[role],  # noqa: B023
            f"the message in {role}",
        )

    # Search: highlights from the API, then a query that does not parse.
    page.keyboard.press("/")
    page.keyboard.type("has:attachment figures")
    page.keyboard.press("Enter")
    result = page.locator(".message-row", has_text=SUBJECT)
    expect(result.locator("mark").first).to_have_text(re.compile("figures", re.I))
    expect(page.locator(".message-row")).to_have_count(1)
    client.check("05-search")
    page.locator("#q").fill("from:(")
    page.locator("#q").press("Enter")
    error = page.locator('.search-error[data-code="query_syntax"]')
    expect(error).to_be_visible()
    expect(error.locator("mark")).to_have_count(1)
    client.check("06-search-error")

    # Reply (r), with an attachment; the draft saves as we type; send; outbox says sent.
    page.locator("#q").fill("subject:quarterly")
    page.locator("#q").press("Enter")
    page.locator(".message-row", has_text=SUBJECT).get_by_role("link").click()
    expect(page.frame_locator("iframe.mail-frame").locator("b")).to_have_text("Alice")
    # The reader focuses its subject once it holds the message the shortcuts act on.
    expect(page.locator("#message-subject")).to_be_focused()
    page.keyboard.press("r")
    # The form comes once the server has made the reply's draft (a write: slow under load).
    expect(page.get_by_label("To")).to_have_value(
        re.compile(re.escape(bob.email)), timeout=SERVER_WAIT_MS
    )
    expect(page.get_by_label("Subject")).to_have_value(f"Re: {SUBJECT}")
    page.get_by_label("Message", exact=True).press("Control+Home")
    page.keyboard.type("Thanks Bob, received. Notes attached.")
    expect(page.locator(".save-state")).to_contain_text(re.compile(r"Draft saved \d"))
    page.get_by_label("Attach files").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"my notes\n"}]
    )
    expect(page.locator(".attach-list")).to_contain_text("notes.txt")
    client.check("07-compose")
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_role("heading", name="Outbox").wait_for()
    sent = page.locator(".outbox-item", has_text=f"Re: {SUBJECT}")
    expect(sent).to_have_attribute("data-state", "sent", timeout=SERVER_WAIT_MS)
    expect(sent).to_contain_text("server: 250")
    client.check("08-outbox")

    raw = wait_until(lambda: find_in_inbox(dovecot, bob, f"Re: {SUBJECT}"), "the reply in Dovecot")
    assert len(raw) == 1
    reply = email.message_from_bytes(raw[0], policy=policy.default)
    assert reply["In-Reply-To"] and alice.email in reply["From"]
    texts = [p.get_content() for p in reply.walk() if p.get_content_type() == "text/plain"]
    assert any("Thanks Bob, received." in t for t in texts)
    assert [p.get_filename() for p in reply.iter_attachments()] == ["notes.txt"]

    # Schedule a new message (c) for later; the outbox holds it until it is cancelled.
    page.keyboard.press("c")
    page.get_by_label("To").fill(bob.email)
    page.get_by_label("Subject").fill("For next year")
    page.get_by_label("Message", exact=True).fill("Not yet.")
    page.get_by_label("Send later (optional)").fill("2099-01-01T09:00")
    page.get_by_role("button", name="Schedule").click()
    later = page.locator(".outbox-item", has_text="For next year")
    expect(later).to_have_attribute("data-state", "queued")
    expect(later).to_contain_text("Scheduled for")
    later.get_by_role("button", name="Cancel sending For next year").click()
    expect(later).to_have_attribute("data-state", "cancelled")
    expect(page.get_by_role("list", name="Drafts")).to_contain_text("For next year")

    # The conversation: once synced, the reply's copy in Sent joins the original's thread.
    page.goto(service.base + "/#/accounts")
    card.get_by_role("button", name=f"Sync {alice.email} now").click()
    found = service.call("web-a", "GET", "/api/sync/search?query=subject:quarterly")["items"]
    # the original, not the reply: once its Sent copy is synced, the reply is the newer hit
    original = next(item for item in found if item["subject"] == SUBJECT)
    thread = f"/api/threads/{original['thread_id']}"
    wait_until(lambda: len(service.call("web-a", "GET", thread)["items"]) == 2, "the thread")
    page.goto(f"{service.base}/#/mail/{original['account_id']}/{original['folder_id']}")
    page.locator(".message-row", has_text=SUBJECT).get_by_role("link").click()
    expect(page.get_by_role("heading", name="Conversation (2)")).to_be_visible()
    expect(page.locator(".thread-list li")).to_have_count(2)
    expect(page.locator(".thread-list a")).to_contain_text("Thanks Bob")

    # Keyboard help.
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    client.check("09-shortcuts")
    page.get_by_role("button", name="Close").click()

    # 360 px: the list and the message fit the width.
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(page.url.split("#")[0] + "#/accounts")
    page.get_by_role("link", name="Open mail").click()
    expect(rows.first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    client.check("10-mobile-mailbox")
    rows.filter(has_text=SUBJECT).get_by_role("link").click()
    expect(page.frame_locator("iframe.mail-frame").locator("b")).to_have_text("Alice")
    expect(rows.first).to_be_hidden()  # the message takes the screen; Back returns
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    client.check("11-mobile-message")
    page.get_by_role("button", name="Folders").click()
    expect(page.locator("nav#nav")).to_be_visible()
    client.check("12-mobile-folders")

    # The syntax error's 400 is the only failed resource the page logged; nothing threw.
    assert client.page_errors == []
    assert unexpected_console_errors(client, (r"status of 400",)) == []
    blocking = {
        name: figure["rules"]
        for name, figure in client.figures.items()
        if any(figure["counts"][impact] for impact in BLOCKING_IMPACTS)
    }
    assert blocking == {}

    # Another tenant sees no account and cannot open this one's mail.
    other = open_client()
    other.sign_in("web-b")
    other.page.get_by_role("heading", name="Accounts").wait_for()
    expect(other.page.locator(".account")).to_have_count(0)
    other.page.goto(f"{service.base}/#/mail/{account_id}")
    expect(other.page.locator("#status")).to_contain_text(re.compile("not found", re.I))


HOSTILE = """<html><head>
<meta http-equiv="refresh" content="0;url={c}/refresh">
<link rel="stylesheet" href="{c}/link.css"><link rel="prefetch" href="{c}/prefetch">
<style>@import url({c}/import.css); body {{ background: url({c}/bg.png) }}</style>
<base href="{c}/base/">
</head><body onload="fetch('{c}/onload')">
<p>Hostile <b>payload</b></p>
<script>fetch('{c}/script')</script>
<img src="x" onerror="fetch('{c}/onerror')">
<img src="{c}/remote.png"><img src="relative.png">
<img srcset="{c}/srcset.png 1x">
<svg onload="fetch('{c}/svg')"><image href="{c}/svgimage.png"/></svg>
<iframe src="{c}/iframe"></iframe><iframe srcdoc="<script>fetch('{c}/srcdoc')</script>"></iframe>
<object data="{c}/object"></object><embed src="{c}/embed">
<video poster="{c}/poster.png" src="{c}/video.mp4" autoplay></video>
<form action="{c}/form"><input autofocus onfocus="fetch('{c}/onfocus')"></form>
<a href="javascript:fetch('{c}/js-link')">link</a>
<div style="background-image: url({c}/style-attr.png)">styled</div>
<math><mtext><table><mglyph><style><img src=x onerror="fetch('{c}/mxss')">
</style></mglyph></table></mtext></math>
</body></html>"""


def hostile_message(recipient: Any, canary: Canary) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Mallory <mallory@evil.test>"
    msg["To"] = recipient.email
    msg["Subject"] = "Hostile HTML"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="evil.test")
    msg.set_content("text part")
    msg.add_alternative(HOSTILE.format(c=canary.url), subtype="html")
    return msg.as_bytes()


def test_a_hostile_message_runs_nothing_and_loads_nothing(
    open_client: Any, service: Service, dovecot: Any, canary: Canary
) -> None:
    tenant = "web-hostile"
    victim = dovecot.add_user(f"victim-{secrets.token_hex(4)}@{MAIL_DOMAIN}", "pw-victim-1")
    with imap_login(dovecot, victim) as imap:
        append(imap, "INBOX", hostile_message(victim, canary))
    account = service.call(
        tenant,
        "POST",
        "/api/accounts",
        {
            "email": victim.email,
            "password": victim.password,
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.imap_port,
            "imap_security": "none",
        },
    )
    service.call(tenant, "POST", f"/api/sync/imap/{account['id']}")
    wait_until(
        lambda: service.call(tenant, "GET", f"/api/sync/status/{account['id']}")["state"] == "ok",
        "the sync of the hostile message",
    )
    message = service.call(tenant, "GET", f"/api/messages?account_id={account['id']}")["items"][0]

    client = open_client()
    client.sign_in(tenant)
    client.page.goto(f"{service.base}/#/mail/{account['id']}/{message['folder_id']}")
    client.page.locator(".message-row", has_text="Hostile HTML").get_by_role("link").click()
    frame = client.page.frame_locator("iframe.mail-frame")
    expect(frame.locator("b")).to_have_text("payload")
    content = client.page.locator("iframe.mail-frame").element_handle().content_frame()
    assert content is not None
    content.wait_for_load_state("load")  # every load the frame's markup asks for has begun
    frame.locator("body").click()  # focus and click handlers get their chance
    frame.locator("a", has_text="link").click()
    client.page.wait_for_timeout(SETTLE_MS)  # a timer or refresh in the mail would fire now
    client.check("13-hostile-message")

    own = (service.base + "/", "data:", "about:", service.events + "/api/events")
    outbound = [url for url in client.requests if not url.startswith(own)]
    assert outbound == []
    assert canary.hits == []
    assert client.page_errors == []

    # Control: the same HTML unsanitized in a plain page does reach the canary, so the
    # detectors above would have seen a vector that fired.
    control = open_client()
    control.page.set_content(HOSTILE.format(c=canary.url))
    wait_until(lambda: "/script" in canary.hits, "the control page's script reaching the canary")
