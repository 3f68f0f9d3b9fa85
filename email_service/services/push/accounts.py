"""The accounts a watcher may hold, and their logins (decrypted here, in the watcher).

A password is decrypted, and an OAuth2 account's access token obtained (refreshed first
when it expires within OAUTH_REFRESH_MARGIN_SECONDS, once across every process:
``services/oauth/tokens.py``), just before each login, in the account's tenant scope.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from email_service.config import Security
from email_service.errors import RemoteAuthError
from email_service.mail.imap.idle import PushLogin
from email_service.mail.sasl import BearerToken
from email_service.services.hosts import Endpoint
from email_service.services.oauth import tokens as oauth_tokens
from email_service.services.runtime import Runtime
from email_service.store.models import Account
from email_service.store.scope import tenant_scope
from email_service.store.states import AccountStatus, AuthKind


@dataclass(frozen=True)
class WatchedAccount:
    """What a watcher keeps of an account: where it connects, no secret.

    Two reads that differ mean the owner changed the login: the connection restarts.
    ``login_changed_at`` moves on an edit of the password, the tokens, the username or the
    server, not on a token refresh (every hour or so), a status change or a key rotation.
    """

    id: uuid.UUID
    tenant_id: str
    host: str
    port: int
    security: str
    username: str
    auth_kind: str
    login_changed_at: datetime


def active_accounts(runtime: Runtime) -> dict[uuid.UUID, WatchedAccount]:
    """Every active account, password or OAuth2 (auth_failed and disabled ones are not
    watched)."""
    with runtime.db.operator_session("push: every tenant's accounts to watch") as session:
        rows = session.execute(
            select(
                Account.id,
                Account.tenant_id,
                Account.imap_host,
                Account.imap_port,
                Account.imap_security,
                Account.username,
                Account.auth_kind,
                Account.login_changed_at,
            ).where(Account.status == AccountStatus.ACTIVE)
        ).all()
    return {row.id: WatchedAccount(*row) for row in rows}


def login_for(runtime: Runtime, account: WatchedAccount) -> PushLogin:
    """The current login to a vetted address (blocking: database, DNS, maybe the token
    endpoint; call off the event loop)."""
    endpoint = Endpoint(account.host, account.port, Security(account.security))
    address = runtime.hosts.addresses(endpoint, "imap")[0]
    with tenant_scope(account.tenant_id):
        secret = _secret(runtime, account)
    ca_file = runtime.settings.mail_ca_file
    return PushLogin(
        host=account.host,
        port=account.port,
        security=account.security,
        username=account.username,
        password=secret,
        connect_address=address,
        ca_file=str(ca_file) if ca_file else None,
        timeout=runtime.settings.imap_timeout,
    )


def _secret(runtime: Runtime, account: WatchedAccount) -> str | BearerToken:
    """The password, or a current access token (one short transaction either way, unless
    the token is refreshed)."""
    if account.auth_kind == AuthKind.OAUTH2:
        return BearerToken(oauth_tokens.access_token(runtime, account.id))
    with runtime.db.session() as session:
        ciphertext = session.scalar(
            select(Account.password_ciphertext).where(Account.id == account.id)
        )
    if ciphertext is None:
        raise RemoteAuthError("the account has no password")
    return runtime.vault.decrypt(ciphertext)


def login_refused(runtime: Runtime, account: WatchedAccount, reason: str) -> None:
    """The server refused the login: an OAuth2 account becomes auth_failed with the server's
    reason (as a sync with that token would make it; a new consent or PUT .../oauth
    reactivates it). A refused password is left to the sync, as before. A login edited
    since this watch began is not failed: the supervisor restarts the watch with it."""
    if account.auth_kind != AuthKind.OAUTH2:
        return
    with tenant_scope(account.tenant_id):
        with runtime.db.session() as session:
            changed = session.scalar(
                select(Account.login_changed_at).where(Account.id == account.id)
            )
        if changed == account.login_changed_at:
            oauth_tokens.mark_auth_failed(runtime, account.id, reason)
