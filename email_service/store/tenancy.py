"""The tenancy rule, written once: a tenant reads its own rows, and another tenant's row is
not found (a 404, never a 403: a caller learns nothing about ids it does not own)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from email_service.errors import NotFoundError
from email_service.store.models import (
    Account,
    Base,
    ComposeAttachment,
    Draft,
    Folder,
    Message,
    Outbox,
    WebhookDelivery,
    WebhookEndpoint,
)

Row = TypeVar("Row", bound=Base)

# What a missing row is called in the problem's title.
NOUNS: dict[type[Base], str] = {
    Account: "account",
    Folder: "folder",
    Message: "message",
    Draft: "draft",
    ComposeAttachment: "attachment",
    Outbox: "outbox message",
    WebhookEndpoint: "webhook",
    WebhookDelivery: "delivery",
}


def owned(model: type[Row], tenant_id: str) -> Select[Row]:
    """A SELECT of the tenant's rows of ``model``; add conditions to it."""
    columns: Any = model
    return select(model).where(columns.tenant_id == tenant_id)


def not_found(model: type[Base], **detail: Any) -> NotFoundError:
    """The error for a row of ``model`` the tenant does not have."""
    return NotFoundError(f"{NOUNS[model]} not found", **detail)


def tenant_row(
    session: Session,
    model: type[Row],
    tenant_id: str,
    row_id: uuid.UUID,
    *where: ColumnElement[bool],
    **detail: Any,
) -> Row:
    """The tenant's row of ``model`` with this id (and ``where``), or NotFoundError."""
    columns: Any = model
    row = session.scalar(owned(model, tenant_id).where(columns.id == row_id, *where))
    if row is None:
        raise not_found(model, **detail)
    return row


def check_tenant_row(
    session: Session, model: type[Base], tenant_id: str, row_id: uuid.UUID, **detail: Any
) -> None:
    """NotFoundError unless the tenant has this row (reads its id only)."""
    columns: Any = model
    query = select(columns.id).where(columns.tenant_id == tenant_id, columns.id == row_id)
    if session.scalar(query) is None:
        raise not_found(model, **detail)


def tenant_rows(
    session: Session, model: type[Row], tenant_id: str, row_ids: Collection[uuid.UUID]
) -> list[Row]:
    """The tenant's rows with these ids, or NotFoundError if any is missing."""
    columns: Any = model
    rows = list(session.scalars(owned(model, tenant_id).where(columns.id.in_(row_ids))))
    if len(rows) != len(set(row_ids)):
        raise not_found(model)
    return rows
