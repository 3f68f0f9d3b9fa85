"""The accounts a watcher may hold, and their logins (decrypted here, in the watcher)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from email_service.config import Security
from email_service.mail.imap.idle import PushLogin
from email_service.services.hosts import Endpoint
from email_service.services.runtime import Runtime
from email_service.store.models import Account
from email_service.store.states import AccountStatus, AuthKind


@dataclass(frozen=True)
class WatchedAccount:
    """What a watcher keeps of an account: where to connect; the password stays sealed."""

    id: uuid.UUID
    tenant_id: str
    host: str
    port: int
    security: str
    username: str
    password_ciphertext: str
    updated_at: datetime  # an edit (new password, new server) restarts the connection


def active_accounts(runtime: Runtime) -> dict[uuid.UUID, WatchedAccount]:
    """Every active password account (auth_failed and disabled ones are not watched; OAuth2
    accounts are left to the periodic sync until the watcher speaks XOAUTH2/OAUTHBEARER)."""
    with runtime.db.operator_session("push: every tenant's accounts to watch") as session:
        rows = session.execute(
            select(
                Account.id,
                Account.tenant_id,
                Account.imap_host,
                Account.imap_port,
                Account.imap_security,
                Account.username,
                Account.password_ciphertext,
                Account.updated_at,
            )
            .where(Account.status == AccountStatus.ACTIVE)
            .where(Account.auth_kind == AuthKind.PASSWORD)
        ).all()
    return {
        row.id: WatchedAccount(
            row.id,
            row.tenant_id,
            row.imap_host,
            row.imap_port,
            row.imap_security,
            row.username,
            row.password_ciphertext,
            row.updated_at,
        )
        for row in rows
        if row.password_ciphertext is not None  # password accounts, as selected
    }


def login_for(runtime: Runtime, account: WatchedAccount) -> PushLogin:
    """The decrypted login to a vetted address (blocking: DNS; call off the event loop)."""
    endpoint = Endpoint(account.host, account.port, Security(account.security))
    address = runtime.hosts.addresses(endpoint, "imap")[0]
    ca_file = runtime.settings.mail_ca_file
    return PushLogin(
        host=account.host,
        port=account.port,
        security=account.security,
        username=account.username,
        password=runtime.vault.decrypt(account.password_ciphertext),
        connect_address=address,
        ca_file=str(ca_file) if ca_file else None,
        timeout=runtime.settings.imap_timeout,
    )
