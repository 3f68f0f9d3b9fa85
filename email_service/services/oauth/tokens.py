"""Stored OAuth2 tokens of an account: sealed at rest, refreshed once, failures recorded.

::

    access token valid for > OAUTH_REFRESH_MARGIN_SECONDS --> use it
    else take the account's refresh lock (lock.py) ------> re-read (another process may
        |                                                  have refreshed meanwhile) -> use
        | refresh grant --ok--> store the new access token (and the rotated refresh token)
        |               --invalid_grant / revoked--> account auth_failed + reason, no retry
        | lock held elsewhere --> wait for it, then use what that process stored

The tokens are one Fernet ciphertext (JSON inside) under the same keys as passwords; they
are decrypted only here, for a login, and never returned, logged or queued.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from email_service.errors import RemoteAuthError, RemoteTemporaryError, ValidationError
from email_service.mail.sasl import BearerToken
from email_service.security.crypto import Vault
from email_service.services.events import record as announce
from email_service.services.oauth import providers
from email_service.services.oauth.lock import DatabaseRefreshLock, RedisRefreshLock, RefreshLock
from email_service.services.runtime import Runtime
from email_service.store.models import Account, utcnow
from email_service.store.states import AccountStatus, AuthKind

# How often a process waiting for another one's refresh looks again (seconds).
WAIT_STEP = 0.1
# Tokens without an expiry are assumed to live this long (RFC 6749 §5.1 makes it optional).
DEFAULT_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class TokenSet:
    """An access token, when it expires, and the refresh token that renews it."""

    access_token: str = field(repr=False)
    expires_at: datetime | None
    refresh_token: str | None = field(default=None, repr=False)

    def due(self, margin: timedelta) -> bool:
        """True when the access token expires within ``margin``."""
        return self.expires_at is not None and self.expires_at - margin <= utcnow()

    @classmethod
    def from_grant(cls, token: dict[str, Any], previous: TokenSet | None = None) -> TokenSet:
        """From a token endpoint answer; a missing refresh token keeps the previous one."""
        if not token.get("access_token"):
            raise ValidationError("the token response has no access_token")
        expires_at = None
        if token.get("expires_at"):
            expires_at = datetime.fromtimestamp(float(token["expires_at"]), utcnow().tzinfo)
        elif token.get("expires_in"):
            expires_at = utcnow() + timedelta(seconds=float(token["expires_in"]))
        refresh = token.get("refresh_token") or (previous.refresh_token if previous else None)
        return cls(str(token["access_token"]), expires_at, refresh)


def seal(vault: Vault, tokens: TokenSet) -> tuple[str, str]:
    """(ciphertext, key id) of the token set."""
    plain = {
        "access_token": tokens.access_token,
        "expires_at": tokens.expires_at.timestamp() if tokens.expires_at else None,
        "refresh_token": tokens.refresh_token,
    }
    sealed = vault.encrypt(json.dumps(plain))
    return sealed.ciphertext, sealed.key_id


def unseal(vault: Vault, ciphertext: str) -> TokenSet:
    """The token set stored in ``ciphertext``."""
    plain = json.loads(vault.decrypt(ciphertext))
    expires = plain.get("expires_at")
    expires_at = datetime.fromtimestamp(expires, utcnow().tzinfo) if expires else None
    return TokenSet(plain["access_token"], expires_at, plain.get("refresh_token"))


def store(row: Account, vault: Vault, tokens: TokenSet) -> None:
    """Put new tokens on the account row (the caller commits)."""
    row.oauth_ciphertext, row.oauth_key_id = seal(vault, tokens)


def refresh_lock(runtime: Runtime) -> RefreshLock:
    """Redis when configured, else the database (embedded default)."""
    lease = runtime.settings.oauth_refresh_lock_seconds
    if runtime.settings.redis_url:
        return RedisRefreshLock(runtime.settings.redis_url, lease)
    return DatabaseRefreshLock(runtime.db, lease)


def login_secret(runtime: Runtime, row: Account) -> str | BearerToken:
    """What the account logs in with: its password, or a current access token."""
    if row.auth_kind != AuthKind.OAUTH2:
        if row.password_ciphertext is None:
            raise RemoteAuthError("the account has no password")
        return runtime.vault.decrypt(row.password_ciphertext)
    return BearerToken(access_token(runtime, row.id))


def access_token(runtime: Runtime, account_id: uuid.UUID) -> str:
    """A current access token of the account, refreshed first when due (once, anywhere)."""
    margin = timedelta(seconds=runtime.settings.oauth_refresh_margin_seconds)
    tokens, row_state = _load(runtime, account_id)
    if not tokens.due(margin) or not tokens.refresh_token or not row_state.provider:
        return tokens.access_token  # a server refusal later reports what is wrong
    if row_state.status == AccountStatus.AUTH_FAILED:
        # The grant was refused before: asking again would be a retry storm.
        raise RemoteAuthError(
            f"OAuth2 authorization must be renewed ({row_state.error or 'refused'})"
        )
    lock, owner = refresh_lock(runtime), uuid.uuid4().hex
    deadline = time.monotonic() + runtime.settings.oauth_refresh_lock_seconds
    while True:
        if lock.acquire(account_id, owner):
            try:
                return _refresh_holding_lock(runtime, account_id, margin)
            finally:
                lock.release(account_id, owner)
        time.sleep(WAIT_STEP)
        tokens, row_state = _load(runtime, account_id)
        if not tokens.due(margin):
            return tokens.access_token
        if row_state.status == AccountStatus.AUTH_FAILED:  # the holder's refresh was refused
            raise RemoteAuthError(f"OAuth2 authorization must be renewed ({row_state.error})")
        if time.monotonic() > deadline:
            raise RemoteTemporaryError("the account's OAuth2 tokens are being renewed elsewhere")


@dataclass(frozen=True)
class _RowState:
    provider: str | None
    status: str
    error: str | None


def _load(runtime: Runtime, account_id: uuid.UUID) -> tuple[TokenSet, _RowState]:
    with runtime.db.session() as session:
        row = session.scalar(select(Account).where(Account.id == account_id))
        if row is None or row.oauth_ciphertext is None:
            raise RemoteAuthError("the account has no OAuth2 tokens")
        state = _RowState(row.oauth_provider, row.status, row.auth_error)
        return unseal(runtime.vault, row.oauth_ciphertext), state


def _refresh_holding_lock(runtime: Runtime, account_id: uuid.UUID, margin: timedelta) -> str:
    tokens, row_state = _load(runtime, account_id)
    if not tokens.due(margin):
        return tokens.access_token  # refreshed by the previous holder
    if row_state.status == AccountStatus.AUTH_FAILED:  # refused to the previous holder
        raise RemoteAuthError(f"OAuth2 authorization must be renewed ({row_state.error})")
    assert tokens.refresh_token is not None and row_state.provider is not None
    provider = providers.resolve(row_state.provider, runtime.settings.oauth_providers)
    try:
        answer = providers.refresh(provider, tokens.refresh_token)
    except RemoteAuthError as exc:
        mark_auth_failed(runtime, account_id, exc.details.get("reason") or exc.message)
        raise
    fresh = TokenSet.from_grant(answer, tokens)
    ciphertext, key_id = seal(runtime.vault, fresh)
    with runtime.db.session() as session:  # credentials only: the account shown is the same
        session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(oauth_ciphertext=ciphertext, oauth_key_id=key_id, updated_at=Account.updated_at)
            .execution_options(synchronize_session=False)
        )
    return fresh.access_token


# Called with (account_id, reason) when an account enters auth_failed because its grant was
# refused; the change log / webhooks hook in here (``account.auth_failed``).
def mark_auth_failed(runtime: Runtime, account_id: uuid.UUID, reason: str) -> None:
    """Account state -> auth_failed with ``reason``, announced (``account.auth_failed``) in
    the same transaction."""
    with runtime.db.session() as session:
        row = session.get(Account, account_id)
        if row is None:
            return
        before = row.status
        if row.status != AccountStatus.DISABLED:
            row.status = AccountStatus.AUTH_FAILED
        row.auth_error = reason
        announce.account_status(session, row, before)
