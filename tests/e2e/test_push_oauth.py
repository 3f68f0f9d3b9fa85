"""Push for an OAuth2 account as deployed: two ``email-service watch`` processes and a Celery
worker on PostgreSQL (row-level security) and a private Redis (leases, the refresh lock),
Dovecot checking the tokens with the test authorization server."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from email_service.config import Security
from email_service.services import accounts
from email_service.services.accounts import AccountFields
from email_service.services.oauth import tokens as oauth_tokens
from tests.conftest import TENANT_A
from tests.e2e.push_support import PushStack, message, wait_for
from tests.integration import oauth_stack
from tests.servers.dovecot import DovecotServer
from tests.servers.fixtures import MAIL_DOMAIN
from tests.servers.oauth_provider import OAuthProvider
from tests.support.mailgen import append, imap_login

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.xdist_group("push"),
]
LEASE_S = 3


@pytest.fixture
def provider_client(oauth_provider: OAuthProvider, dovecot: DovecotServer) -> dict[str, Any]:
    """The test provider as "testidp" in OAUTH_PROVIDERS, and its client id."""
    conf = oauth_stack.provider_settings(oauth_provider, dovecot, None)
    idp = conf["oauth_providers"][oauth_stack.PROVIDER]
    return {
        "client_id": idp.client_id,
        "env": {
            "OAUTH_PROVIDERS": json.dumps({oauth_stack.PROVIDER: idp.model_dump(mode="json")}),
            "OAUTH_REDIRECT_URL": conf["oauth_redirect_url"],
            "OAUTH_REFRESH_MARGIN_SECONDS": "30",
            "MAIL_CA_FILE": str(dovecot.ca_file),
        },
    }


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, redis_server: Any, provider_client: dict[str, Any]) -> Any:
    env = {"WATCH_LEASE_SECONDS": str(LEASE_S), **provider_client["env"]}
    push = PushStack(tmp_path, pg_url, redis_server.url, **env)
    yield push
    push.close()


def _expired_account(stack: PushStack, dovecot: DovecotServer, user: Any, issued: Any) -> uuid.UUID:
    """An OAuth2 account whose stored access token expired long ago (refresh token good)."""
    expired = oauth_tokens.TokenSet(
        issued.access_token, datetime(2000, 1, 1, tzinfo=UTC), issued.refresh_token
    )
    fields = AccountFields(
        email=user.email,
        oauth=expired,
        oauth_provider=oauth_stack.PROVIDER,
        imap_host="127.0.0.1",
        imap_port=dovecot.imap_port,
        imap_security=Security.STARTTLS,
    )
    runtime = stack.runtime
    with runtime.db.session() as session:
        return accounts.create_account(session, TENANT_A, fields, runtime.vault, runtime.hosts).id


def test_an_expired_token_is_refreshed_once_and_pushed_mail_is_stored(
    stack: PushStack,
    dovecot: DovecotServer,
    oauth_provider: OAuthProvider,
    provider_client: dict[str, Any],
) -> None:
    user = dovecot.add_user(f"oauth-push-{secrets.token_hex(5)}@{MAIL_DOMAIN}", "pw-unused-12")
    issued = oauth_provider.issue(user.email, provider_client["client_id"])
    oauth_provider.expire_access_tokens(user.email)
    account = _expired_account(stack, dovecot, user, issued)
    stack.worker()
    watchers = [stack.watcher(), stack.watcher()]

    def in_idle() -> bool:
        return sum(stack.metric(w, "imap_push_idle_connections") for w in watchers) == 1

    wait_for(in_idle, "the account in IDLE")
    with imap_login(dovecot, user) as client:
        append(client, "INBOX", message("pushed with a token"))
    wait_for(lambda: stack.count(account, "pushed with a token", "INBOX"), "the pushed message")
    # the watcher's login and the sync it queued both needed a current token: one refresh
    assert oauth_provider.refreshes(user.email) == 1
    assert len(stack.holders()) == 1
