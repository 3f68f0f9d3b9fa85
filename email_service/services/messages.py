"""The read side: folders, message lists, one message, its raw bytes and parts, threads.

Every query is scoped by tenant; another tenant's ids are simply not found.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Select, bindparam, func, select
from sqlalchemy.orm import Session

from email_service.errors import NotFoundError, ValidationError
from email_service.mail.mime.html import sanitize_html
from email_service.mail.mime.list_headers import client_headers
from email_service.mail.mime.parse import AttachmentInfo, extract_part, safe_filename
from email_service.services.paging import Page, decode_cursor, encode_cursor, older_than
from email_service.store.blobs import BlobStore
from email_service.store.models import (
    SUMMARY_COLUMNS,
    Account,
    Attachment,
    Folder,
    Message,
    UTCDateTime,
)
from email_service.store.reader import Reader
from email_service.store.tenancy import check_tenant_row, tenant_row

# How a LIST answer says a folder is subscribed (RFC 5258 §3.4), kept among its attributes.
SUBSCRIBED = "\\Subscribed"


@dataclass(frozen=True)
class MessageFilter:
    """Filters of GET /api/messages; None means "any"."""

    account_id: uuid.UUID | None = None
    folder_id: uuid.UUID | None = None
    thread_id: str | None = None
    seen: bool | None = None
    flagged: bool | None = None
    answered: bool | None = None
    has_attachments: bool | None = None
    after: datetime | None = None
    before: datetime | None = None


@dataclass(frozen=True)
class RenderedMessage:
    """One message with its display-safe body."""

    message: Message
    folder: Folder
    attachments: list[Attachment]
    html: str | None
    remote_images: int
    remote_images_blocked: int


def folder_view(row: Folder) -> dict[str, Any]:
    """A folder as plain data."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "delimiter": row.delimiter,
        "subscribed": any(a.lower() == SUBSCRIBED.lower() for a in row.attributes or []),
        "message_count": row.message_count,
        "unread_count": row.unread_count,
        "synced_at": row.synced_at,
    }


def summary_view(row: Message | Row[Any]) -> dict[str, Any]:
    """A message as a list shows it, as plain data."""
    sender = {"name": row.from_name or "", "email": row.from_email} if row.from_email else None
    return {
        "id": row.id,
        "account_id": row.account_id,
        "folder_id": row.folder_id,
        "thread_id": row.thread_id,
        "subject": row.subject,
        "sender": sender,
        "to": row.to_addrs,
        "received_date": row.received_date,
        "sent_at": row.sent_at,
        "flags": row.flags,
        "seen": row.seen,
        "flagged": row.flagged,
        "answered": row.answered,
        "has_attachments": row.has_attachments,
        "snippet": row.snippet,
        "size": row.size,
    }


def detail_view(shown: RenderedMessage, attachment_url: str) -> dict[str, Any]:
    """One rendered message as plain data; attachment URLs are ``attachment_url`` + index."""
    row = shown.message
    return {
        **summary_view(row),
        "folder": shown.folder.name,
        "message_id_header": row.message_id,
        "in_reply_to": row.in_reply_to,
        "references": row.references,
        "cc": row.cc_addrs,
        "bcc": row.bcc_addrs,
        "reply_to": row.reply_to,
        "text": row.body_text,
        "html": shown.html,
        "remote_images": shown.remote_images,
        "remote_images_blocked": shown.remote_images_blocked,
        "attachments": [
            {
                "index": a.part_index,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "content_id": a.content_id,
                "inline": a.is_inline,
                "url": f"{attachment_url}{a.part_index}",
            }
            for a in shown.attachments
        ],
        "parse_error": row.parse_error,
        # what a client acts on (unsubscribe, list, automated), from the stored fields
        "list_headers": asdict(client_headers(list(row.headers.items()))),
    }


def list_folders(session: Session, tenant_id: str, account_id: uuid.UUID) -> list[Folder]:
    """The account's folders: inbox first, then by role, then by name."""
    check_tenant_row(session, Account, tenant_id, account_id)
    rows = list(
        session.scalars(
            select(Folder).where(Folder.tenant_id == tenant_id, Folder.account_id == account_id)
        )
    )
    order = ("inbox", "drafts", "sent", "archive", "flagged", "junk", "trash", "all")
    return sorted(rows, key=lambda f: (order.index(f.role) if f.role in order else 99, f.name))


# Filters compared by value, bound as parameters: ids and a thread.
BOUND_FILTERS = ("account_id", "folder_id", "thread_id")
# Flag filters, written into the statement as constants: a partial index on ``NOT seen`` or
# ``flagged`` (migration 0006) serves only a statement that says so, not ``seen = $1``.
FLAG_FILTERS = ("seen", "flagged", "answered", "has_attachments")


@functools.cache
def _page_statement(shape: tuple[object, ...]) -> Select[Any]:
    """The list statement for one combination of filters, built (and compiled) once; the
    values come as parameters. ``shape``: the bound filters given, each flag filter's value
    (or None), whether ``after``/``before``/a cursor are given."""
    bound, flags, after, before, cursor = shape
    query: Select[Any] = select(*SUMMARY_COLUMNS).where(Message.tenant_id == bindparam("tenant_id"))
    for column in cast(tuple[str, ...], bound):
        query = query.where(getattr(Message, column) == bindparam(column))
    for column, value in zip(FLAG_FILTERS, cast(tuple[bool | None, ...], flags), strict=True):
        if value is not None:
            query = query.where(getattr(Message, column) == value)
    if after:
        query = query.where(Message.received_date >= bindparam("after"))
    if before:
        query = query.where(Message.received_date < bindparam("before"))
    if cursor:
        at: Any = bindparam("cursor_at", type_=UTCDateTime())
        key: Any = bindparam("cursor_id")
        query = query.where(older_than(Message.received_date, Message.id, at, key))
    newest_first = (Message.received_date.desc(), Message.id.desc())
    return query.order_by(*newest_first).limit(bindparam("limit"))


def list_messages(
    session: Session | Connection | Reader,
    tenant_id: str,
    flt: MessageFilter,
    limit: int,
    cursor: str | None = None,
) -> Page[Row[Any]]:
    """Newest first, in keyset pages that stay stable when new mail arrives; each row has
    the :data:`SUMMARY_COLUMNS` (what :func:`summary_view` reads)."""
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit + 1}
    bound = tuple(name for name in BOUND_FILTERS if getattr(flt, name) is not None)
    params.update({name: getattr(flt, name) for name in bound})
    params.update(after=flt.after, before=flt.before)
    if cursor:
        at, key = decode_cursor(cursor)
        try:
            params.update(cursor_at=at, cursor_id=uuid.UUID(key))
        except ValueError:
            raise ValidationError("invalid cursor", field="cursor") from None
    flags = tuple(getattr(flt, name) for name in FLAG_FILTERS)
    shape = (bound, flags, flt.after is not None, flt.before is not None, bool(cursor))
    rows = session.execute(_page_statement(shape), params).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].received_date, str(rows[-1].id)) if more else None
    return Page(list(rows), next_cursor)


def get_message(session: Session, tenant_id: str, message_id: uuid.UUID) -> Message:
    """One message of this tenant, or NotFoundError."""
    return tenant_row(session, Message, tenant_id, message_id)


def attachments_of(session: Session, message: Message) -> list[Attachment]:
    """The message's attachments in part order."""
    return list(
        session.scalars(
            select(Attachment)
            .where(Attachment.message_id == message.id)
            .order_by(Attachment.part_index)
        )
    )


def render(
    session: Session,
    tenant_id: str,
    message_id: uuid.UUID,
    attachment_url: str,
    block_remote_images: bool = True,
) -> RenderedMessage:
    """A message with sanitized HTML; ``cid:`` images point at ``attachment_url`` + index."""
    message = get_message(session, tenant_id, message_id)
    folder = session.get_one(Folder, message.folder_id)
    parts = attachments_of(session, message)
    html, remote, blocked = None, 0, 0
    if message.body_html:
        cids = {
            a.content_id.strip("<>"): f"{attachment_url}{a.part_index}"
            for a in parts
            if a.content_id
        }
        clean = sanitize_html(
            message.body_html, cid_urls=cids, block_remote_images=block_remote_images
        )
        html, remote, blocked = clean.html, clean.remote_images, clean.remote_images_blocked
    return RenderedMessage(message, folder, parts, html, remote, blocked)


def raw_message(session: Session, tenant_id: str, message_id: uuid.UUID, blobs: BlobStore) -> bytes:
    """The original MIME bytes."""
    return blobs.get(get_message(session, tenant_id, message_id).blob_sha256)


def attachment(
    session: Session, tenant_id: str, message_id: uuid.UUID, index: int, blobs: BlobStore
) -> tuple[AttachmentInfo, bytes, str]:
    """An attachment's description, decoded bytes and a safe file name."""
    message = get_message(session, tenant_id, message_id)
    known = session.scalar(
        select(Attachment.id).where(
            Attachment.message_id == message.id, Attachment.part_index == index
        )
    )
    if known is None:
        raise NotFoundError("no such attachment", index=index)
    info, data = extract_part(blobs.get(message.blob_sha256), index)
    return info, data, safe_filename(info.filename, f"attachment-{index}")


def thread_messages(session: Session, tenant_id: str, thread_id: str) -> list[Message]:
    """Every message of a thread across folders, in the order they were written."""
    written = func.coalesce(Message.sent_at, Message.received_date)
    rows = list(
        session.scalars(
            select(Message)
            .where(Message.tenant_id == tenant_id, Message.thread_id == thread_id)
            .order_by(written, Message.received_date, Message.id)
        )
    )
    if not rows:
        raise NotFoundError("thread not found")
    return rows
