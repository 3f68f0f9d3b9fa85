"""Accounts: register, read, change and remove mailboxes of one tenant.

Passwords are encrypted before they reach the session and never leave this module in
clear: records carry no password field at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.config import Security
from email_service.errors import (
    ConflictError,
    HeaderInjectionError,
    NotFoundError,
    ValidationError,
)
from email_service.security.crypto import Vault
from email_service.services.hosts import Endpoint, MailHostPolicy
from email_service.services.oauth import tokens as oauth_tokens
from email_service.services.oauth.tokens import TokenSet
from email_service.services.paging import Page, decode_cursor, encode_cursor
from email_service.store.change_log import ChangeType, Op, record
from email_service.store.models import Account, utcnow
from email_service.store.reader import Reader
from email_service.store.states import AccountStatus, AuthKind
from email_service.store.tenancy import not_found, tenant_row

# Characters that would let a display name smuggle a header line (RFC 5322 §2.2).
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\x00")


@dataclass(frozen=True)
class AccountFields:
    """Fields a client may set; None means "not given"."""

    email: str | None = None
    password: str | None = None
    display_name: str | None = None
    username: str | None = None
    imap_host: str | None = None
    imap_port: int | None = None
    imap_security: Security | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: Security | None = None
    status: str | None = None
    oauth: TokenSet | None = None  # instead of a password: OAuth2 tokens
    oauth_provider: str | None = None  # the configured provider that refreshes them


@dataclass(frozen=True)
class AccountRecord:
    """An account as the API shows it: everything but the password."""

    id: uuid.UUID
    tenant_id: str
    email: str
    display_name: str | None
    username: str
    imap_host: str
    imap_port: int
    imap_security: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    status: str
    created_at: datetime
    updated_at: datetime
    auth_kind: str
    auth_error: str | None

    @classmethod
    def of_row(cls, row: Sequence[object]) -> AccountRecord:
        """The record of a row of its columns, in field order: ``AccountRecord(*row)``
        without the frozen dataclass's checked setting of each field (a page builds many)."""
        record = object.__new__(cls)
        record.__dict__.update(zip(_FIELD_NAMES, row, strict=True))
        return record


_FIELD_NAMES = tuple(f.name for f in fields(AccountRecord))


def _record(row: Account) -> AccountRecord:
    return AccountRecord(**{f.name: getattr(row, f.name) for f in fields(AccountRecord)})


# Reads select an AccountRecord's columns, in its field order, and build records from the
# rows: no ORM objects, no password ciphertext read. The statements are built once, with
# parameters, as listing accounts is the API's most frequent call.
_RECORD = select(*[getattr(Account, f.name) for f in fields(AccountRecord)])
_ONE = _RECORD.where(
    Account.tenant_id == bindparam("tenant_id"), Account.id == bindparam("account_id")
)
_FIRST_PAGE = (
    _RECORD.where(Account.tenant_id == bindparam("tenant_id"))
    .order_by(Account.created_at, Account.id)
    .limit(bindparam("limit"))
)
_NEXT_PAGE = _FIRST_PAGE.where(
    (Account.created_at > bindparam("after_time"))
    | ((Account.created_at == bindparam("after_time")) & (Account.id > bindparam("after_id")))
)


def _reject_header_breaks(data: AccountFields) -> None:
    for name in ("email", "display_name", "username"):
        value = getattr(data, name)
        if value is not None and any(c in value for c in FORBIDDEN_IN_HEADERS):
            raise HeaderInjectionError(f"{name} must not contain CR, LF or NUL", field=name)


def _load(session: Session, tenant_id: str, account_id: uuid.UUID) -> Account:
    return tenant_row(session, Account, tenant_id, account_id, account_id=str(account_id))


def create_account(
    session: Session, tenant_id: str, data: AccountFields, vault: Vault, hosts: MailHostPolicy
) -> AccountRecord:
    """Register a mailbox; servers not given come from the operator's defaults."""
    assert data.email is not None and (data.password is not None or data.oauth is not None)
    _reject_header_breaks(data)
    imap = Endpoint(
        data.imap_host or hosts.imap_default.host,
        data.imap_port or hosts.imap_default.port,
        data.imap_security or hosts.imap_default.security,
    )
    smtp = Endpoint(
        data.smtp_host or hosts.smtp_default.host,
        data.smtp_port or hosts.smtp_default.port,
        data.smtp_security or hosts.smtp_default.security,
    )
    hosts.check(imap, "imap")
    hosts.check(smtp, "smtp")
    row = Account(
        tenant_id=tenant_id,
        email=data.email,
        display_name=data.display_name,
        username=data.username or data.email,
        imap_host=imap.host,
        imap_port=imap.port,
        imap_security=imap.security.value,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security=smtp.security.value,
        status=data.status or AccountStatus.ACTIVE,
    )
    _set_credentials(row, data, vault)
    session.add(row)
    _flush_unique(session, data.email)
    record(session, tenant_id, row.id, ChangeType.ACCOUNT, row.id, Op.CREATED)
    return _record(row)


def _set_credentials(row: Account, data: AccountFields, vault: Vault) -> None:
    """A password, or OAuth2 tokens (which replace the password), when given."""
    if data.password is not None:
        sealed = vault.encrypt(data.password)
        row.password_ciphertext, row.password_key_id = sealed.ciphertext, sealed.key_id
        row.password_scheme = sealed.scheme
        row.auth_kind, row.oauth_ciphertext, row.oauth_key_id = AuthKind.PASSWORD, None, None
        row.oauth_provider = None
    elif data.oauth is not None:
        oauth_tokens.store(row, vault, data.oauth)
        row.auth_kind, row.oauth_provider = AuthKind.OAUTH2, data.oauth_provider
        row.password_ciphertext = row.password_key_id = row.password_scheme = None
    else:
        return
    row.auth_error = None


def _flush_unique(session: Session, email: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"an account for {email} already exists", field="email") from None


def get_account(session: Session, tenant_id: str, account_id: uuid.UUID) -> AccountRecord:
    """One account of this tenant, or NotFoundError."""
    row = session.execute(_ONE, {"tenant_id": tenant_id, "account_id": account_id}).first()
    if row is None:
        raise not_found(Account, account_id=str(account_id))
    return AccountRecord(*row)


def list_accounts(
    session: Session | Connection | Reader,
    tenant_id: str,
    limit: int,
    cursor: str | None = None,
) -> Page[AccountRecord]:
    """This tenant's accounts, oldest first, in keyset pages."""
    params: dict[str, object] = {"tenant_id": tenant_id, "limit": limit + 1}
    query = _FIRST_PAGE
    if cursor:
        after_time, after_key = decode_cursor(cursor)
        params |= {"after_time": after_time, "after_id": _cursor_uuid(after_key)}
        query = _NEXT_PAGE
    rows = [AccountRecord.of_row(row) for row in session.execute(query, params)]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, str(rows[-1].id)) if more else None
    return Page(rows, next_cursor)


def _cursor_uuid(key: str) -> uuid.UUID:
    try:
        return uuid.UUID(key)
    except ValueError:
        raise ValidationError("invalid cursor", field="cursor") from None


def update_account(
    session: Session,
    tenant_id: str,
    account_id: uuid.UUID,
    data: AccountFields,
    vault: Vault,
    hosts: MailHostPolicy,
) -> AccountRecord:
    """Change the given fields; a new host or port is checked like at creation."""
    _reject_header_breaks(data)
    row = _load(session, tenant_id, account_id)
    for name in (
        "email",
        "display_name",
        "username",
        "imap_host",
        "imap_port",
        "smtp_host",
        "smtp_port",
        "status",
    ):
        value = getattr(data, name)
        if value is not None:
            setattr(row, name, value)
    for name in ("imap_security", "smtp_security"):
        value = getattr(data, name)
        if value is not None:
            setattr(row, name, value.value)
    if any(getattr(data, f"imap_{n}") is not None for n in ("host", "port", "security")):
        hosts.check(Endpoint(row.imap_host, row.imap_port, Security(row.imap_security)), "imap")
    if any(getattr(data, f"smtp_{n}") is not None for n in ("host", "port", "security")):
        hosts.check(Endpoint(row.smtp_host, row.smtp_port, Security(row.smtp_security)), "smtp")
    credentials = ("password", "oauth", "username", "imap_host", "imap_port", "imap_security")
    if any(getattr(data, n) is not None for n in credentials):
        row.login_changed_at = utcnow()  # push logs in again
        if row.status == AccountStatus.AUTH_FAILED:
            row.status = AccountStatus.ACTIVE  # new credentials deserve a new attempt
    _set_credentials(row, data, vault)
    _flush_unique(session, row.email)
    record(session, tenant_id, row.id, ChangeType.ACCOUNT, row.id, Op.UPDATED)
    return _record(row)


def delete_account(session: Session, tenant_id: str, account_id: uuid.UUID) -> None:
    """Remove the account and everything stored for it."""
    session.delete(_load(session, tenant_id, account_id))
    session.flush()
    record(session, tenant_id, account_id, ChangeType.ACCOUNT, account_id, Op.DESTROYED)


def account_password(session: Session, tenant_id: str, account_id: uuid.UUID, vault: Vault) -> str:
    """The decrypted password, for the mail protocol layer only (tasks, verify)."""
    ciphertext = _load(session, tenant_id, account_id).password_ciphertext
    if ciphertext is None:
        raise ValidationError("the account logs in with OAuth2, not a password")
    return vault.decrypt(ciphertext)


def tenant_of(session: Session, account_id: uuid.UUID) -> str:
    """The tenant an account belongs to (operator tools only; the API never asks this)."""
    tenant = session.scalar(select(Account.tenant_id).where(Account.id == account_id))
    if tenant is None:
        raise NotFoundError("account not found", account_id=str(account_id))
    return tenant


def rotate_keys(session: Session, vault: Vault, batch: int = 500) -> tuple[int, int]:
    """Re-encrypt every row not under the primary key; returns (rotated, total)."""
    total = rotated = 0
    last: uuid.UUID | None = None
    while True:
        query = select(Account).order_by(Account.id).limit(batch)
        if last is not None:
            query = query.where(Account.id > last)
        rows = list(session.scalars(query))
        if not rows:
            return rotated, total
        for row in rows:
            total += 1
            values = _rotated(row, vault)
            if values:
                # the same secrets under another key: the account shown is unchanged
                session.execute(
                    update(Account)
                    .where(Account.id == row.id)
                    .values(**values, updated_at=Account.updated_at)
                    .execution_options(synchronize_session=False)
                )
                rotated += 1
        session.commit()
        last = rows[-1].id


def _rotated(row: Account, vault: Vault) -> dict[str, str]:
    """The row's password and OAuth2 tokens not under the primary key, re-encrypted."""
    values: dict[str, str] = {}
    if row.password_ciphertext is not None and row.password_key_id != vault.primary_key_id:
        sealed = vault.rotate(row.password_ciphertext)
        values |= {"password_ciphertext": sealed.ciphertext, "password_key_id": sealed.key_id}
    if row.oauth_ciphertext is not None and row.oauth_key_id != vault.primary_key_id:
        sealed = vault.rotate(row.oauth_ciphertext)
        values |= {"oauth_ciphertext": sealed.ciphertext, "oauth_key_id": sealed.key_id}
    return values
