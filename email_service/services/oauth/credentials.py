"""OAuth2 tokens an application brings itself (``"oauth"`` on create, PUT .../oauth)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from email_service.config import Settings
from email_service.errors import NotFoundError, ValidationError
from email_service.security.crypto import Vault
from email_service.services import accounts
from email_service.services.accounts import AccountFields, AccountRecord
from email_service.services.oauth import providers
from email_service.services.oauth.tokens import TokenSet, store
from email_service.store.change_log import ChangeType, Op, record
from email_service.store.models import Account
from email_service.store.states import AccountStatus, AuthKind
from email_service.store.tenancy import tenant_row


def token_set(
    access_token: str,
    refresh_token: str | None = None,
    expires_at: int | None = None,
    expires_in: int | None = None,
) -> TokenSet:
    """Tokens as a client gives them (expiry as unix time or seconds from now)."""
    when = None
    if expires_at is not None:
        when = datetime.fromtimestamp(expires_at, UTC)
    elif expires_in is not None:
        when = datetime.now(UTC) + timedelta(seconds=expires_in)
    return TokenSet(access_token, when, refresh_token)


def check_provider(settings: Settings, name: str | None) -> providers.Provider | None:
    """The configured provider ``name`` (None if not given), or a ValidationError."""
    if name is None:
        return None
    try:
        return providers.resolve(name, settings.oauth_providers)
    except NotFoundError:
        raise ValidationError(
            f"no OAuth2 provider {name!r} is configured", field="oauth.provider"
        ) from None


def with_provider_servers(
    data: AccountFields, provider: providers.Provider | None
) -> AccountFields:
    """Servers not given come from the provider's preset (e.g. imap.gmail.com)."""
    if provider is None:
        return data
    changes: dict[str, object] = {}
    if provider.imap and data.imap_host is None:
        changes |= {
            "imap_host": provider.imap.host,
            "imap_port": data.imap_port or provider.imap.port,
            "imap_security": data.imap_security or provider.imap.security,
        }
    if provider.smtp and data.smtp_host is None:
        changes |= {
            "smtp_host": provider.smtp.host,
            "smtp_port": data.smtp_port or provider.smtp.port,
            "smtp_security": data.smtp_security or provider.smtp.security,
        }
    return replace(data, **changes)  # type: ignore[arg-type]


def replace_tokens(
    session: Session,
    tenant_id: str,
    account_id: uuid.UUID,
    tokens: TokenSet,
    provider: str | None,
    vault: Vault,
) -> AccountRecord:
    """New tokens for an account (it becomes an OAuth2 account); auth_failed is cleared."""
    row = tenant_row(session, Account, tenant_id, account_id, account_id=str(account_id))
    store(row, vault, tokens)
    row.auth_kind = AuthKind.OAUTH2
    row.oauth_provider = provider if provider is not None else row.oauth_provider
    row.password_ciphertext = row.password_key_id = row.password_scheme = None
    row.auth_error = None
    row.login_changed_at = datetime.now(UTC)  # push logs in again
    if row.status == AccountStatus.AUTH_FAILED:
        row.status = AccountStatus.ACTIVE  # new credentials deserve a new attempt
    session.flush()
    record(session, tenant_id, row.id, ChangeType.ACCOUNT, row.id, Op.UPDATED)
    return accounts.get_account(session, tenant_id, account_id)


def replace_fields(data: AccountFields, tokens: TokenSet, provider: str | None) -> AccountFields:
    """``data`` logging in with ``tokens`` (refreshed through ``provider``) instead."""
    return replace(data, password=None, oauth=tokens, oauth_provider=provider)
