"""A stored message's header fields, in order, with what a client acts on parsed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from email_service.mail.mime.list_headers import ClientHeaders, client_headers, ordered_fields
from email_service.services import messages
from email_service.store.blobs import BlobStore


@dataclass(frozen=True)
class HeadersView:
    """All fields in order (name as sent), and the parsed list and automation fields."""

    fields: list[tuple[str, str]]
    parsed: ClientHeaders


def message_headers(
    session: Session, tenant_id: str, message_id: uuid.UUID, blobs: BlobStore
) -> HeadersView:
    """The headers of the tenant's message (NotFoundError for another tenant's)."""
    fields = ordered_fields(messages.raw_message(session, tenant_id, message_id, blobs))
    return HeadersView(fields, client_headers(fields))
