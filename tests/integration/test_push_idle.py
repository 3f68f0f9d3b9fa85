"""The asyncio push client against the real Dovecot: IDLE + NOTIFY report every folder."""

from __future__ import annotations

import asyncio
import imaplib
from typing import Any

import pytest

from email_service.errors import RemoteAuthError
from email_service.mail.imap.idle import PushClient, PushLogin
from tests.support import aio
from tests.support.mailgen import make_message

pytestmark = [pytest.mark.dovecot]


def _login(dovecot: Any, user: Any, password: str | None = None) -> PushLogin:
    return PushLogin(
        "127.0.0.1", dovecot.imap_port, "none", user.email, password or user.password, timeout=10
    )


async def _until(events: list[str], count: int) -> None:
    while len(events) < count:  # bounded by the test's asyncio.wait_for
        await asyncio.sleep(0.02)


async def _scenario(dovecot: Any, user: Any) -> tuple[list[str], list[str]]:
    other = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    other.login(user.email, user.password)
    other.create("Projects")
    client = await PushClient.connect(_login(dovecot, user))
    await client.examine_inbox()
    assert await client.notify_all()
    events: list[str] = []
    idle = asyncio.create_task(client.idle(events.append, renew_seconds=1))
    await asyncio.sleep(0.3)  # IDLE has started (and renews every second meanwhile)
    steps: list[str] = []

    async def step(name: str, action: Any, expect: int) -> None:
        await asyncio.to_thread(action)
        await asyncio.wait_for(_until(events, expect), 20)
        steps.append(name)

    await step("append inbox", lambda: other.append("INBOX", None, None, make_message(1)), 1)
    await step("append folder", lambda: other.append("Projects", None, None, make_message(2)), 2)
    other.select("Projects")
    await step("flag", lambda: other.store("1", "+FLAGS", "\\Flagged"), 3)
    await step("expunge", lambda: (other.store("1", "+FLAGS", "\\Deleted"), other.expunge()), 4)
    idle.cancel()
    await client.logout()
    other.logout()
    return events, steps


def test_idle_with_notify_hears_inbox_and_other_folders(dovecot: Any, mail_user: Any) -> None:
    events, steps = aio.run(asyncio.wait_for(_scenario(dovecot, mail_user), 60))
    assert steps == ["append inbox", "append folder", "flag", "expunge"]
    assert events[0] == "INBOX"
    assert set(events[1:]) == {"Projects"}


def test_wrong_password_is_an_auth_error(dovecot: Any, mail_user: Any) -> None:
    with pytest.raises(RemoteAuthError):
        aio.run(PushClient.connect(_login(dovecot, mail_user, "wrong-password")))
