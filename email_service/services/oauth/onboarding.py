"""Adding a mailbox by the authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636).

::

    authorize(tenant, subject, provider) --> state row (hash of state, PKCE verifier
        encrypted, nonce, tenant, subject, expiry) --> authorization URL
    user consents at the provider --> redirect to OAUTH_REDIRECT_URL?code&state
    callback(code, state[, caller]) --> state consumed (single use: one DELETE wins)
        expired / unknown / replayed / other tenant or subject --> OAuthStateError
        --> code exchanged with the verifier (Authlib) --> address from the id_token
        --> account created, or the same mailbox's account given the new tokens
        --> IMAP and SMTP logins checked --> first sync queued

The state is 256 random bits; only its SHA-256 is stored, so a database copy cannot
complete someone's authorization. A browser flow (the web client) adds the address to come
back to: ``<random>.<base64url(return_to)>``. The stored hash covers it, so it cannot be
swapped, and it is a path on this service only (``RETURN_TO_RE``): no open redirect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.integrations.base_client.errors import OAuthError
from sqlalchemy import delete, select

from email_service.errors import (
    BadRequestError,
    FeatureDisabledError,
    RemoteTemporaryError,
    ValidationError,
)
from email_service.services import accounts, verify
from email_service.services.accounts import AccountFields, AccountRecord
from email_service.services.oauth import credentials, identity, providers
from email_service.services.oauth.tokens import TokenSet
from email_service.services.runtime import Runtime
from email_service.services.sync import schedule as sync_jobs
from email_service.store.models import Account, OAuthState, utcnow
from email_service.store.scope import tenant_scope

# RFC 7636 §4.1: the verifier is 43-128 characters; 64 random bytes give 86.
VERIFIER_BYTES = 64
STATE_BYTES = 32
# Where a browser flow returns: a path on this service. One leading slash, not two ("//h"
# is another host), no backslash (browsers read "/\\h" as "//h"), printable ASCII only.
RETURN_TO_RE = re.compile(r"^/([!#-.0-\[\]-~][!#-\[\]-~]{0,198})?$")


class OAuthStateError(BadRequestError):
    """The callback's state is unknown, expired, already used or not the caller's."""

    code = "oauth_state_invalid"


class OAuthGrantError(BadRequestError):
    """The provider refused the authorization or the code exchange (e.g. PKCE mismatch)."""

    code = "oauth_grant_refused"


@dataclass(frozen=True)
class Authorization:
    """Where to send the user, and until when the answer is accepted."""

    authorization_url: str
    expires_at: datetime


@dataclass(frozen=True)
class Onboarded:
    """The account the callback created or renewed, what its logins said, its first sync."""

    account: AccountRecord
    created: bool
    checks: dict[str, verify.Check]
    sync_job_id: str | None


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _redirect_url(runtime: Runtime) -> str:
    url = runtime.settings.oauth_redirect_url
    if not url:
        raise FeatureDisabledError("OAuth2 onboarding needs OAUTH_REDIRECT_URL")
    return url


def authorize(
    runtime: Runtime,
    tenant_id: str,
    subject: str,
    provider_name: str,
    login_hint: str | None = None,
    return_to: str | None = None,
) -> Authorization:
    """Start an authorization: remember the state, return the provider's URL; with
    ``return_to`` the callback sends the browser back there."""
    provider = providers.resolve(provider_name, runtime.settings.oauth_providers)
    redirect_uri = _redirect_url(runtime)
    state, nonce = _new_state(return_to), secrets.token_urlsafe(16)
    verifier = secrets.token_urlsafe(VERIFIER_BYTES)
    expires_at = utcnow() + timedelta(seconds=runtime.settings.oauth_state_ttl_seconds)
    with runtime.db.session() as session:
        session.execute(delete(OAuthState).where(OAuthState.expires_at < utcnow()))
        session.add(
            OAuthState(
                state_hash=_hash(state),
                tenant_id=tenant_id,
                subject=subject,
                provider=provider.name,
                verifier_ciphertext=runtime.vault.encrypt(verifier).ciphertext,
                nonce=nonce,
                expires_at=expires_at,
            )
        )
    extra = dict(provider.extra_authorize_params)
    if login_hint:
        extra["login_hint"] = login_hint
    session_ = provider.session(redirect_uri=redirect_uri)
    url, _ = session_.create_authorization_url(
        provider.authorization_endpoint, state=state, code_verifier=verifier, nonce=nonce, **extra
    )
    session_.close()
    return Authorization(url, expires_at)


def _new_state(return_to: str | None) -> str:
    state = secrets.token_urlsafe(STATE_BYTES)
    if return_to is None:
        return state
    if not RETURN_TO_RE.match(return_to):
        raise ValidationError("return_to must be a path on this service", field="return_to")
    return state + "." + base64.urlsafe_b64encode(return_to.encode()).decode().rstrip("=")


def return_to(state: str | None) -> str | None:
    """The path a browser flow asked to come back to, from its state; None for an API
    flow or anything that is not a path on this service."""
    if not state or "." not in state:
        return None
    encoded = state.rpartition(".")[2]
    try:
        value = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return value if RETURN_TO_RE.match(value) else None


@dataclass(frozen=True)
class _Pending:
    tenant_id: str
    subject: str
    provider: str
    verifier: str
    nonce: str


def _consume(runtime: Runtime, state: str, caller: tuple[str, str] | None) -> _Pending:
    """Take the state row (single use), whatever happens next; refuse if not acceptable."""
    key = _hash(state)
    with runtime.db.operator_session("oauth2 callback: the state row names its tenant") as session:
        row = session.scalar(select(OAuthState).where(OAuthState.state_hash == key))
        taken = session.execute(delete(OAuthState).where(OAuthState.state_hash == key))
        if row is None or getattr(taken, "rowcount", 0) != 1:
            raise OAuthStateError("unknown or already used OAuth2 state")
        pending = _Pending(
            row.tenant_id,
            row.subject,
            row.provider,
            runtime.vault.decrypt(row.verifier_ciphertext),
            row.nonce,
        )
        expired = row.expires_at < utcnow()
    if expired:
        raise OAuthStateError("the OAuth2 authorization took too long; start again")
    if caller is not None and caller != (pending.tenant_id, pending.subject):
        raise OAuthStateError("this OAuth2 state was issued to someone else")
    return pending


def callback(
    runtime: Runtime,
    params: dict[str, str],
    caller: tuple[str, str] | None = None,
) -> Onboarded:
    """Finish an authorization from the redirect's query (``caller``: tenant, subject)."""
    state = params.get("state")
    if not state:
        raise OAuthStateError("the callback has no state")
    pending = _consume(runtime, state, caller)
    with tenant_scope(pending.tenant_id):
        return _finish(runtime, params, pending)


def _finish(runtime: Runtime, params: dict[str, str], pending: _Pending) -> Onboarded:
    if params.get("error"):
        reason = params["error"] + (
            f": {params['error_description']}" if params.get("error_description") else ""
        )
        raise OAuthGrantError(f"the provider refused the authorization ({reason})")
    if not params.get("code"):
        raise OAuthGrantError("the callback has no code")
    provider = providers.resolve(pending.provider, runtime.settings.oauth_providers)
    token = _exchange(runtime, provider, params["code"], pending.verifier)
    address = identity.mailbox_address(provider, token, pending.nonce)
    record, created = _save_account(runtime, pending, provider, address, TokenSet.from_grant(token))
    checks = verify.verify_account(runtime, pending.tenant_id, record.id)
    job_id = None
    if checks["imap"].ok and runtime.settings.enable_imap_sync and runtime.queue is not None:
        job_id = sync_jobs.trigger(runtime, pending.tenant_id, record.id).job_id
    with runtime.db.reading() as session:
        record = accounts.get_account(session, pending.tenant_id, record.id)
    return Onboarded(record, created, checks, job_id)


def _exchange(
    runtime: Runtime, provider: providers.Provider, code: str, verifier: str
) -> dict[str, Any]:
    session = provider.session(redirect_uri=_redirect_url(runtime))
    try:
        token: dict[str, Any] = session.fetch_token(
            provider.token_endpoint,
            code=code,
            code_verifier=verifier,
            grant_type="authorization_code",
        )
    except OAuthError as exc:
        raise OAuthGrantError(f"the provider refused the code ({exc.error})") from None
    except OSError as exc:
        raise RemoteTemporaryError(f"token endpoint unreachable: {type(exc).__name__}") from None
    finally:
        session.close()
    return token


def _save_account(
    runtime: Runtime,
    pending: _Pending,
    provider: providers.Provider,
    address: str,
    tokens: TokenSet,
) -> tuple[AccountRecord, bool]:
    """The same mailbox's account gets the new tokens (keeping its data); else a new one."""
    with runtime.db.session() as session:
        existing = session.scalar(
            select(Account.id).where(
                Account.tenant_id == pending.tenant_id, Account.email == address
            )
        )
        if existing is not None:
            record = credentials.replace_tokens(
                session, pending.tenant_id, existing, tokens, provider.name, runtime.vault
            )
            return record, False
        data = credentials.with_provider_servers(
            AccountFields(email=address, oauth=tokens, oauth_provider=provider.name), provider
        )
        record = accounts.create_account(
            session, pending.tenant_id, data, runtime.vault, runtime.hosts
        )
        return record, True
