"""OAuth2 mailboxes end to end: the real authorization server (Authlib), Dovecot verifying
the tokens by introspection, Postfix taking SMTP AUTH through Dovecot; both backends.

authorize -> consent -> callback -> account -> sync -> send; expiry between syncs -> one
refresh; revoked grant -> auth_failed and no more token requests; state refused when
tampered, replayed, expired, foreign, or when PKCE does not match.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from email_service.services.runtime import Runtime
from email_service.store.models import Account, Change, OAuthState
from tests.conftest import TENANT_A, TENANT_B
from tests.integration import oauth_stack
from tests.servers.dovecot import DovecotServer, MailAccount
from tests.servers.oauth_provider import OAuthProvider
from tests.servers.postfix import PostfixServer
from tests.support.compose_api import compose, running_app, send, wait_state

pytestmark = [pytest.mark.dovecot, pytest.mark.postfix]


@pytest.fixture
def stack(
    make_settings: Any,
    oauth_provider: OAuthProvider,
    dovecot: DovecotServer,
    postfix: PostfixServer,
) -> Iterator[tuple[FlaskClient, Runtime]]:
    settings = make_settings(**oauth_stack.provider_settings(oauth_provider, dovecot, postfix))
    with running_app(settings) as (api, runtime):
        yield api, runtime


@pytest.fixture
def user(dovecot: DovecotServer) -> MailAccount:
    """A mailbox that only ever logs in with tokens (its password is never used)."""
    email = f"oauth-{secrets.token_hex(5)}@example.test"
    return dovecot.add_user(email, secrets.token_urlsafe(12))


def _onboard(api: FlaskClient, headers: dict[str, str], user: MailAccount) -> dict[str, Any]:
    query = oauth_stack.authorize(api, headers, user.email)
    response = api.get(f"/api/oauth/callback?{query}")
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def test_authorize_callback_sync_and_send(
    stack: tuple[FlaskClient, Runtime],
    as_tenant: Any,
    user: MailAccount,
    oauth_provider: OAuthProvider,
    dovecot: DovecotServer,
) -> None:
    api, runtime = stack
    headers = as_tenant(TENANT_A)
    done = _onboard(api, headers, user)
    account = done["account"]
    assert done["created"] is True
    assert account["email"] == user.email and account["auth_kind"] == "oauth2"
    assert done["imap"]["ok"] and done["smtp"]["ok"], done
    assert done["sync_job_id"]
    assert oauth_stack.wait_sync(api, headers, account["id"])["state"] == "ok"

    subject = f"by token {secrets.token_hex(4)}"
    draft = compose(
        api, headers, account_id=account["id"], to=[user.email], cc=[], bcc=[], subject=subject
    )
    outbox = send(api, headers, draft["id"])
    assert wait_state(api, headers, outbox["id"], "sent", "failed")["state"] == "sent"
    assert _delivered(dovecot, user.email, subject)
    assert oauth_stack.sync_now(api, headers, account["id"])["state"] == "ok"
    folders = api.get(f"/api/accounts/{account['id']}/folders", headers=headers).get_json()
    inbox = next(f["id"] for f in folders["items"] if f["role"] == "inbox")
    listed = api.get(f"/api/messages?folder_id={inbox}", headers=headers).get_json()
    assert subject in {m["subject"] for m in listed["items"]}  # delivered, then synced
    log = dovecot.log_file.read_text()
    assert f"user=<{user.email}>, method=OAUTHBEARER" in log
    # the other tenant sees nothing of it
    assert api.get(f"/api/accounts/{account['id']}", headers=as_tenant(TENANT_B)).status_code == 404
    tokens = oauth_stack.stored_tokens(runtime, account["id"])
    assert tokens.refresh_token and tokens.access_token not in str(done)


def _delivered(dovecot: DovecotServer, email: str, subject: str) -> bool:
    """Poll the Maildir until Postfix's delivery is there (no timing asserted)."""
    new = dovecot.maildir(email) / "new"
    for _ in range(200):
        if new.exists() and any(subject in p.read_text(errors="replace") for p in new.iterdir()):
            return True
        time.sleep(0.05)
    return False


def test_expiry_between_syncs_refreshes_once_and_stores_the_rotated_token(
    stack: tuple[FlaskClient, Runtime],
    as_tenant: Any,
    user: MailAccount,
    oauth_provider: OAuthProvider,
) -> None:
    api, runtime = stack
    headers = as_tenant(TENANT_A)
    account_id = _onboard(api, headers, user)["account"]["id"]
    assert oauth_stack.wait_sync(api, headers, account_id)["state"] == "ok"
    before = oauth_stack.stored_tokens(runtime, account_id)
    assert oauth_provider.refreshes(user.email) == 0

    oauth_provider.expire_access_tokens(user.email)  # the server refuses the old one now
    oauth_stack.age_tokens(runtime, account_id)
    assert oauth_stack.sync_now(api, headers, account_id)["state"] == "ok"
    assert oauth_stack.sync_now(api, headers, account_id)["state"] == "ok"

    assert oauth_provider.refreshes(user.email) == 1
    after = oauth_stack.stored_tokens(runtime, account_id)
    assert after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token  # rotation kept


def test_revoked_grant_is_auth_failed_without_retries_and_reauthorizing_restores(
    stack: tuple[FlaskClient, Runtime],
    as_tenant: Any,
    user: MailAccount,
    oauth_provider: OAuthProvider,
) -> None:
    api, runtime = stack
    headers = as_tenant(TENANT_A)
    account_id = _onboard(api, headers, user)["account"]["id"]
    assert oauth_stack.wait_sync(api, headers, account_id)["state"] == "ok"

    oauth_provider.revoke_user(user.email)
    oauth_stack.age_tokens(runtime, account_id)
    assert oauth_stack.sync_now(api, headers, account_id)["state"] == "auth_failed"
    account = api.get(f"/api/accounts/{account_id}", headers=headers).get_json()
    assert account["status"] == "auth_failed"
    assert "invalid_grant" in account["auth_error"]
    with runtime.db.session() as session:  # announced once: account.auth_failed
        announced = session.scalars(
            select(Change.entity_id).where(
                Change.tenant_id == TENANT_A,
                Change.type == "account",
                Change.detail == "auth_failed",
            )
        ).all()
    assert announced == [account_id]
    asked = oauth_provider.refreshes(user.email)
    assert asked == 1
    for _ in range(3):  # further syncs do not ask the provider again
        assert oauth_stack.sync_now(api, headers, account_id)["state"] == "auth_failed"
    assert oauth_provider.refreshes(user.email) == asked

    again = _onboard(api, headers, user)  # the same mailbox: same account, data kept
    assert again["created"] is False and again["account"]["id"] == account_id
    assert again["account"]["status"] == "active" and again["account"]["auth_error"] is None
    assert oauth_stack.wait_sync(api, headers, account_id)["state"] == "ok"


def _query(api: FlaskClient, headers: dict[str, str], user: MailAccount) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(oauth_stack.authorize(api, headers, user.email)).items()}


def _no_accounts(api: FlaskClient, as_tenant: Any) -> bool:
    return all(
        api.get("/api/accounts", headers=as_tenant(t)).get_json()["items"] == []
        for t in (TENANT_A, TENANT_B)
    )


def test_tampered_state_is_refused(
    stack: tuple[FlaskClient, Runtime], as_tenant: Any, user: MailAccount
) -> None:
    api, _runtime = stack
    query = _query(api, as_tenant(TENANT_A), user)
    query["state"] = query["state"][:-2] + ("AA" if not query["state"].endswith("AA") else "BB")
    _refused(api, as_tenant, urlencode(query), "oauth_state_invalid")


def test_replayed_state_is_refused(
    stack: tuple[FlaskClient, Runtime], as_tenant: Any, user: MailAccount
) -> None:
    api, _runtime = stack
    query = urlencode(_query(api, as_tenant(TENANT_A), user))
    assert api.get(f"/api/oauth/callback?{query}").status_code == 200
    replay = api.get(f"/api/oauth/callback?{query}")
    assert replay.status_code == 400
    assert replay.get_json()["code"] == "oauth_state_invalid"


def test_expired_state_is_refused(
    stack: tuple[FlaskClient, Runtime], as_tenant: Any, user: MailAccount
) -> None:
    api, runtime = stack
    query = _query(api, as_tenant(TENANT_A), user)
    with runtime.db.session() as session:
        session.execute(update(OAuthState).values(expires_at=_past()))
    _refused(api, as_tenant, urlencode(query), "oauth_state_invalid")


def _refused(api: FlaskClient, as_tenant: Any, query: str, code: str) -> None:
    """The callback answers a 400 problem with ``code`` and creates no account anywhere."""
    response = api.get(f"/api/oauth/callback?{query}")
    assert response.status_code == 400
    assert response.get_json()["code"] == code
    assert _no_accounts(api, as_tenant)


def _past() -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC)


def test_pkce_mismatch_is_refused(
    stack: tuple[FlaskClient, Runtime], as_tenant: Any, user: MailAccount
) -> None:
    api, runtime = stack
    query = _query(api, as_tenant(TENANT_A), user)
    with runtime.db.session() as session:  # as if an attacker injected their own code
        wrong = runtime.vault.encrypt(secrets.token_urlsafe(64)).ciphertext
        session.execute(update(OAuthState).values(verifier_ciphertext=wrong))
    _refused(api, as_tenant, urlencode(query), "oauth_grant_refused")


def test_callback_from_another_tenant_is_refused(
    stack: tuple[FlaskClient, Runtime], as_tenant: Any, user: MailAccount
) -> None:
    api, runtime = stack
    query = urlencode(_query(api, as_tenant(TENANT_A), user))
    response = api.get(f"/api/oauth/callback?{query}", headers=as_tenant(TENANT_B))
    assert response.status_code == 400
    assert response.get_json()["code"] == "oauth_state_invalid"
    assert _no_accounts(api, as_tenant)
    with runtime.db.session() as session:  # and the state is spent: no second try
        assert session.scalar(select(OAuthState)) is None


def test_unknown_provider_is_404(stack: tuple[FlaskClient, Runtime], as_tenant: Any) -> None:
    api, _runtime = stack
    response = api.post("/api/oauth/nope/authorize", headers=as_tenant(TENANT_A), json={})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_tokens_brought_along_log_in_and_are_never_returned(
    stack: tuple[FlaskClient, Runtime],
    as_tenant: Any,
    user: MailAccount,
    oauth_provider: OAuthProvider,
) -> None:
    api, runtime = stack
    headers = as_tenant(TENANT_A)
    client_id = runtime.settings.oauth_providers[oauth_stack.PROVIDER].client_id
    token = oauth_provider.issue(user.email, client_id)
    body = {
        "email": user.email,
        "oauth": {
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "expires_in": 300,
            "provider": oauth_stack.PROVIDER,
        },
    }
    created = api.post("/api/accounts", headers=headers, json=body)
    assert created.status_code == 201, created.get_json()
    account = created.get_json()
    assert account["auth_kind"] == "oauth2" and account["imap_port"] > 9  # provider's servers
    assert oauth_stack.sync_now(api, headers, account["id"])["state"] == "ok"
    listed = api.get("/api/accounts", headers=headers)
    for answer in (created, listed):
        text = answer.get_data(as_text=True)
        assert token.access_token not in text and str(token.refresh_token) not in text

    fresh = oauth_provider.issue(user.email, client_id)
    put = api.put(
        f"/api/accounts/{account['id']}/oauth",
        headers=headers,
        json={"access_token": fresh.access_token, "expires_in": 300},
    )
    assert put.status_code == 200 and fresh.access_token not in put.get_data(as_text=True)
    assert oauth_stack.stored_tokens(runtime, account["id"]).access_token == fresh.access_token
    other = api.put(
        f"/api/accounts/{account['id']}/oauth",
        headers=as_tenant(TENANT_B),
        json={"access_token": "x" * 20},
    )
    assert other.status_code == 404
    with runtime.db.session() as session:
        row = session.get_one(Account, uuid.UUID(account["id"]))
        assert row.password_ciphertext is None and row.oauth_ciphertext
        assert fresh.access_token not in row.oauth_ciphertext


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.test"},
        {"email": "a@example.test", "password": "x", "oauth": {"access_token": "t"}},
        {"email": "a@example.test", "oauth": {"access_token": ""}},
        {"email": "a@example.test", "oauth": {"access_token": "t", "provider": "nope"}},
        {"email": "a@example.test", "oauth": {"access_token": "t", "extra": 1}},
    ],
)
def test_bad_oauth_bodies_are_422(
    stack: tuple[FlaskClient, Runtime], as_tenant: Any, body: dict[str, Any]
) -> None:
    api, _runtime = stack
    response = api.post("/api/accounts", headers=as_tenant(TENANT_A), json=body)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"


def test_a_browser_flow_returns_to_the_client_and_only_to_this_service(
    stack: tuple[FlaskClient, Runtime], as_tenant: Any, user: MailAccount
) -> None:
    api, _runtime = stack
    headers = as_tenant(TENANT_A)
    listed = api.get("/api/oauth/providers", headers=headers)
    assert listed.get_json() == {"items": [{"name": "testidp", "label": "testidp"}]}
    assert "secret" not in listed.get_data(as_text=True)
    start = f"/api/oauth/{oauth_stack.PROVIDER}/authorize"
    for elsewhere in ("//evil.example/", "/\\evil.example", "https://evil.example/", "x"):
        body = {"login_hint": user.email, "return_to": elsewhere}
        assert api.post(start, headers=headers, json=body).status_code == 422, elsewhere
    body = {"login_hint": user.email, "return_to": "/#/accounts"}
    url = api.post(start, headers=headers, json=body).get_json()["authorization_url"]
    query = oauth_stack.consent(url)
    back = api.get(f"/api/oauth/callback?{query}")  # the browser's redirect: no token
    assert back.status_code == 303
    location = urlsplit(back.headers["Location"])
    assert (location.netloc, location.path, location.fragment) == ("", "/", "/accounts")
    result = parse_qs(location.query)
    assert result["oauth_result"] == ["created"]
    account_id = result["oauth_account"][0]
    assert api.get(f"/api/accounts/{account_id}", headers=headers).get_json()["email"] == user.email
    assert api.get(f"/api/accounts/{account_id}", headers=as_tenant(TENANT_B)).status_code == 404
    again = api.get(f"/api/oauth/callback?{query}")  # replayed: back with a code, no text
    assert parse_qs(urlsplit(again.headers["Location"]).query) == {
        "oauth_error": ["oauth_state_invalid"]
    }
    # A state rewritten to point elsewhere is unknown, and not followed anywhere either.
    state = parse_qs(query)["state"][0].rpartition(".")[0] + ".Ly9ldmlsLmV4YW1wbGU"  # //evil
    forged = api.get(f"/api/oauth/callback?{urlencode({'state': state, 'code': 'x'})}")
    assert forged.status_code == 400 and "Location" not in forged.headers
