"""The asyncio push client against the real Dovecot: IDLE + NOTIFY report every folder;
OAuth2 bearer tokens (the test authorization server's) log in with OAUTHBEARER or XOAUTH2."""

from __future__ import annotations

import asyncio
import imaplib
import secrets
from typing import Any

import pytest

from email_service.errors import RemoteAuthError
from email_service.mail.imap.idle import PushClient, PushLogin
from email_service.mail.sasl import BearerToken
from tests.servers.dovecot import DovecotServer, MailAccount
from tests.servers.oauth_provider import OAuthProvider
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
    await asyncio.wait({idle}, timeout=5)  # its last read ends before LOGOUT's begins
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


class _Offering(PushClient):
    """The client, with some of the server's capabilities hidden from it (the one seam:
    Dovecot offers both mechanisms and SASL-IR)."""

    hidden: frozenset[str] = frozenset()

    async def authenticate(self, username: str, token: BearerToken, host: str, port: int) -> None:
        if not self.capabilities:
            await self.run(b"CAPABILITY")
        self.capabilities = self.capabilities - self.hidden
        await super().authenticate(username, token, host, port)


def _hiding(hidden: set[str]) -> type[_Offering]:
    class Client(_Offering):
        pass

    Client.hidden = frozenset(hidden)
    return Client


def _push_login(dovecot: DovecotServer, user: MailAccount, token: str) -> PushLogin:
    return PushLogin(
        dovecot.host,
        dovecot.imap_port,
        "starttls",
        user.email,
        BearerToken(token),
        ca_file=str(dovecot.ca_file),
        timeout=10,
    )


@pytest.mark.parametrize(
    ("hidden", "method"),
    [
        (set(), "OAUTHBEARER"),
        ({"AUTH=OAUTHBEARER"}, "XOAUTH2"),
        ({"SASL-IR"}, "OAUTHBEARER"),  # the response after the server's "+"
        ({"AUTH=OAUTHBEARER", "SASL-IR"}, "XOAUTH2"),
    ],
)
def test_the_push_client_logs_in_with_the_mechanism_offered(
    dovecot: DovecotServer,
    mail_user: MailAccount,
    oauth_provider: OAuthProvider,
    hidden: set[str],
    method: str,
) -> None:
    oauth_provider.add_client("push-sasl", secrets.token_hex(8), [])
    token = oauth_provider.issue(mail_user.email, "push-sasl").access_token

    async def scenario() -> str | None:
        client = await _hiding(hidden).connect(_push_login(dovecot, mail_user, token))
        await client.examine_inbox()
        await client.logout()
        return client.selected

    assert aio.run(asyncio.wait_for(scenario(), 30)) == "INBOX"
    assert f"user=<{mail_user.email}>, method={method}" in dovecot.log_file.read_text()


@pytest.mark.parametrize("hidden", [set(), {"AUTH=OAUTHBEARER"}])
def test_the_push_client_reports_the_servers_reason_for_a_refused_token(
    dovecot: DovecotServer, mail_user: MailAccount, oauth_provider: OAuthProvider, hidden: set[str]
) -> None:
    oauth_provider.add_client("push-sasl", secrets.token_hex(8), [])
    token = oauth_provider.issue(mail_user.email, "push-sasl").access_token
    oauth_provider.revoke_user(mail_user.email)
    client = _hiding(hidden)
    with pytest.raises(RemoteAuthError) as caught:
        aio.run(asyncio.wait_for(client.connect(_push_login(dovecot, mail_user, token)), 30))
    assert str(caught.value.details["reason"]).startswith("token refused: status=")
    assert token not in str(caught.value) + repr(caught.value.details)
