"""Webhook endpoints of a tenant: create, read, change, rotate the secret, remove.

The signing secret (``whsec_`` + base64, as Standard Webhooks defines it) is returned
once, at creation or rotation, and stored only encrypted. A URL must be http(s) and its
host must resolve to public addresses or be on ``ALLOWED_WEBHOOK_HOSTS`` (the SSRF guard
of mail hosts, ``security/netguard.py``); it is checked again before every delivery.
A new endpoint receives the events that happen after it was created.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.errors import ValidationError
from email_service.security.crypto import Vault
from email_service.security.netguard import AllowList, Resolver, check_url, system_resolve
from email_service.services.events import feed
from email_service.services.events.names import check_patterns
from email_service.services.paging import Page, decode_cursor, encode_cursor
from email_service.store.models import Account, WebhookDelivery, WebhookEndpoint
from email_service.store.tenancy import tenant_row

# Standard Webhooks: secrets are 24-64 random bytes, base64, prefixed "whsec_".
SECRET_BYTES = 32
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
MAX_URL_LENGTH = 2048


class Status:
    """An endpoint's states."""

    ENABLED = "enabled"
    DISABLED = "disabled"


@dataclass(frozen=True)
class WebhookRecord:
    """An endpoint as the API shows it (never its secret)."""

    id: uuid.UUID
    tenant_id: str
    url: str
    description: str | None
    event_types: list[str]
    account_id: uuid.UUID | None
    status: str
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WebhookFields:
    """What a client may set; None means "not given" (``clear_account`` drops the filter)."""

    url: str | None = None
    event_types: list[str] | None = None
    account_id: uuid.UUID | None = None
    clear_account: bool = False
    description: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class WebhookPolicy:
    """Which hosts webhook URLs may name: public ones and ``ALLOWED_WEBHOOK_HOSTS``."""

    allow: AllowList
    resolve: Resolver = system_resolve

    @classmethod
    def from_entries(cls, entries: list[str]) -> WebhookPolicy:
        """Build from ALLOWED_WEBHOOK_HOSTS."""
        return cls(AllowList.parse(entries))

    def check(self, url: str) -> None:
        """Raise ValidationError/BlockedHostError unless ``url`` may receive webhooks."""
        check_url(url, self.allow, "webhook", "ALLOWED_WEBHOOK_HOSTS", resolve=self.resolve)


def new_secret() -> str:
    """A fresh signing secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _record(row: WebhookEndpoint) -> WebhookRecord:
    return WebhookRecord(**{f.name: getattr(row, f.name) for f in fields(WebhookRecord)})


def _load(session: Session, tenant_id: str, webhook_id: uuid.UUID) -> WebhookEndpoint:
    return tenant_row(session, WebhookEndpoint, tenant_id, webhook_id, webhook_id=str(webhook_id))


def _check_account(session: Session, tenant_id: str, account_id: uuid.UUID) -> None:
    found = session.scalar(
        select(Account.id).where(Account.tenant_id == tenant_id, Account.id == account_id)
    )
    if found is None:
        raise ValidationError("no such account", field="account_id")


def _check_url(url: str, policy: WebhookPolicy) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"url is longer than {MAX_URL_LENGTH} characters", field="url")
    policy.check(url)
    return url


def create(
    session: Session, tenant_id: str, data: WebhookFields, vault: Vault, policy: WebhookPolicy
) -> tuple[WebhookRecord, str]:
    """A new endpoint, and its secret (shown this once)."""
    assert data.url is not None and data.event_types is not None
    if data.account_id is not None:
        _check_account(session, tenant_id, data.account_id)
    secret = new_secret()
    sealed = vault.encrypt(secret)
    row = WebhookEndpoint(
        tenant_id=tenant_id,
        url=_check_url(data.url, policy),
        description=data.description,
        event_types=check_patterns(data.event_types),
        account_id=data.account_id,
        secret_ciphertext=sealed.ciphertext,
        secret_key_id=sealed.key_id,
        status=Status.ENABLED,
        cursor_seq=feed.current_state(session, tenant_id),
    )
    session.add(row)
    session.flush()
    return _record(row), secret


def get(session: Session, tenant_id: str, webhook_id: uuid.UUID) -> WebhookRecord:
    """One endpoint of this tenant, or NotFoundError."""
    return _record(_load(session, tenant_id, webhook_id))


def list_webhooks(
    session: Session, tenant_id: str, limit: int, cursor: str | None = None
) -> Page[WebhookRecord]:
    """This tenant's endpoints, oldest first, in keyset pages."""
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        .limit(limit + 1)
    )
    if cursor:
        at, key = decode_cursor(cursor)
        query = query.where(
            (WebhookEndpoint.created_at > at)
            | ((WebhookEndpoint.created_at == at) & (WebhookEndpoint.id > _uuid(key)))
        )
    rows = [_record(r) for r in session.scalars(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].created_at, str(rows[-1].id)) if more else None)


def _uuid(key: str) -> uuid.UUID:
    try:
        return uuid.UUID(key)
    except ValueError:
        raise ValidationError("invalid cursor", field="cursor") from None


def update(
    session: Session,
    tenant_id: str,
    webhook_id: uuid.UUID,
    data: WebhookFields,
    policy: WebhookPolicy,
) -> WebhookRecord:
    """Change the given fields; enabling again forgets the failures that disabled it."""
    row = _load(session, tenant_id, webhook_id)
    if data.url is not None:
        row.url = _check_url(data.url, policy)
    if data.event_types is not None:
        row.event_types = check_patterns(data.event_types)
    if data.account_id is not None:
        _check_account(session, tenant_id, data.account_id)
        row.account_id = data.account_id
    elif data.clear_account:
        row.account_id = None
    if data.description is not None:
        row.description = data.description
    if data.status is not None and data.status != row.status:
        row.status = data.status
        if data.status == Status.ENABLED:
            row.failing_since, row.disabled_reason = None, None
    session.flush()
    return _record(row)


def rotate_secret(session: Session, tenant_id: str, webhook_id: uuid.UUID, vault: Vault) -> str:
    """Replace the signing secret; the new one is returned this once."""
    row = _load(session, tenant_id, webhook_id)
    secret = new_secret()
    sealed = vault.encrypt(secret)
    row.secret_ciphertext, row.secret_key_id = sealed.ciphertext, sealed.key_id
    session.flush()
    return secret


def delete(session: Session, tenant_id: str, webhook_id: uuid.UUID) -> None:
    """Remove the endpoint and its deliveries."""
    session.delete(_load(session, tenant_id, webhook_id))
    session.flush()


@dataclass(frozen=True)
class DeliveryRecord:
    """One event for an endpoint and what its attempts got."""

    id: uuid.UUID
    webhook_id: str
    event_type: str
    state: str
    attempts: int
    last_status: int | None
    last_latency_ms: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[dict[str, object]]
    payload: dict[str, object]


def list_deliveries(
    session: Session, tenant_id: str, webhook_id: uuid.UUID, limit: int, cursor: str | None = None
) -> Page[DeliveryRecord]:
    """An endpoint's deliveries, newest first, in keyset pages."""
    _load(session, tenant_id, webhook_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.endpoint_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        at, key = decode_cursor(cursor)
        query = query.where(
            (WebhookDelivery.created_at < at)
            | ((WebhookDelivery.created_at == at) & (WebhookDelivery.id < _uuid(key)))
        )
    rows = list(session.scalars(query))
    more = len(rows) > limit
    items = [delivery_record(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].created_at, str(items[-1].id)) if more else None
    return Page(items, next_cursor)


def delivery_record(row: WebhookDelivery) -> DeliveryRecord:
    """A delivery as the API shows it; ``webhook_id`` is its ``webhook-id`` header."""
    return DeliveryRecord(
        id=row.id,
        webhook_id=f"msg_{row.id.hex}",
        event_type=row.event_type,
        state=row.state,
        attempts=row.attempts,
        last_status=row.last_status,
        last_latency_ms=row.last_latency_ms,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        attempt_log=list(row.attempt_log),
        payload=dict(row.payload),
    )
