"""Helpers for the OAuth2 tests: settings naming the test provider, the consent round trip."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import requests
from flask.testing import FlaskClient
from sqlalchemy import update

from email_service.config import OAuthProviderSettings, Security
from email_service.services.oauth import tokens as oauth_tokens
from email_service.services.runtime import Runtime
from email_service.store.models import Account
from tests.servers.dovecot import DovecotServer
from tests.servers.oauth_provider import OAuthProvider
from tests.servers.postfix import PostfixServer

PROVIDER = "testidp"
# Never dialled: the tests take the provider's redirect and call the app themselves.
REDIRECT_URL = "http://127.0.0.1:9/api/oauth/callback"
# Ends a wait for the background sync; never reached when the code is right.
WAIT_S = 60.0


def register_client(provider: OAuthProvider) -> tuple[str, str]:
    """A fresh confidential client at the provider, redirecting to REDIRECT_URL."""
    client_id, secret = f"svc-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    provider.add_client(client_id, secret, [REDIRECT_URL])
    return client_id, secret


def provider_settings(
    provider: OAuthProvider, dovecot: DovecotServer, postfix: PostfixServer | None
) -> dict[str, Any]:
    """Settings fields: OAUTH_PROVIDERS with the test provider (OIDC discovery) and servers."""
    client_id, secret = register_client(provider)
    conf = OAuthProviderSettings(
        client_id=client_id,
        client_secret=secret,
        issuer=provider.issuer,
        scopes=["openid", "email", "mail", "offline_access"],
        imap_host="127.0.0.1",
        imap_port=dovecot.imap_port,
        imap_security=Security.STARTTLS,
        smtp_host="127.0.0.1",
        smtp_port=postfix.submission_port if postfix else 9,
        smtp_security=Security.STARTTLS,
    )
    return {
        "oauth_providers": {PROVIDER: conf},
        "oauth_redirect_url": REDIRECT_URL,
        "mail_ca_file": dovecot.ca_file,
        # the provider's tokens live 5 minutes: refresh only when really due
        "oauth_refresh_margin_seconds": 30,
    }


def consent(authorization_url: str) -> str:
    """Follow the authorization URL; the provider's redirect query (code, state)."""
    answer = requests.get(authorization_url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URL), location
    return urlsplit(location).query


def authorize(api: FlaskClient, headers: dict[str, str], login_hint: str) -> str:
    """POST /api/oauth/{provider}/authorize, then consent: the callback's query."""
    response = api.post(
        f"/api/oauth/{PROVIDER}/authorize", headers=headers, json={"login_hint": login_hint}
    )
    assert response.status_code == 200, response.get_json()
    return consent(response.get_json()["authorization_url"])


def wait_sync(api: FlaskClient, headers: dict[str, str], account_id: str) -> dict[str, Any]:
    """The sync status once it has finished."""
    deadline = time.monotonic() + WAIT_S
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api.get(f"/api/sync/status/{account_id}", headers=headers).get_json()
        if body["state"] in ("ok", "error", "auth_failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"sync did not finish: {body}")


def sync_now(api: FlaskClient, headers: dict[str, str], account_id: str) -> dict[str, Any]:
    """Trigger a sync and wait for its end."""
    response = api.post(f"/api/sync/imap/{account_id}", headers=headers)
    assert response.status_code == 202, response.get_json()
    return wait_sync(api, headers, account_id)


def stored_tokens(runtime: Runtime, account_id: str) -> oauth_tokens.TokenSet:
    """The account's tokens, decrypted."""
    with runtime.db.session() as session:
        row = session.get_one(Account, uuid.UUID(account_id))
        assert row.oauth_ciphertext is not None
        return oauth_tokens.unseal(runtime.vault, row.oauth_ciphertext)


def age_tokens(runtime: Runtime, account_id: str) -> None:
    """Make the stored access token look expired (as if time had passed between syncs)."""
    with runtime.db.session() as session:
        row = session.get_one(Account, uuid.UUID(account_id))
        assert row.oauth_ciphertext is not None
        current = oauth_tokens.unseal(runtime.vault, row.oauth_ciphertext)
        past = oauth_tokens.TokenSet(
            current.access_token,
            oauth_tokens.utcnow().replace(year=2000),
            current.refresh_token,
        )
        ciphertext, key_id = oauth_tokens.seal(runtime.vault, past)
        session.execute(  # the test's own write, as time would have it
            update(Account)
            .where(Account.id == row.id)
            .values(oauth_ciphertext=ciphertext, oauth_key_id=key_id)
        )
