"""Read API: folders of an account, message lists, one message, raw MIME, attachments,
threads."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from apiflask import APIBlueprint
from flask import Response, url_for
from pydantic import BaseModel, Field

from email_service.api.headers import ListFields
from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.responses import built_json
from email_service.api.http.schemas import MAX_PAGE_SIZE, JsonUUID, QueryInput, StrictInput
from email_service.errors import NotFoundError
from email_service.services import gateways, messages, parsing, writeback

bp = APIBlueprint("messages", __name__, url_prefix="/api", tag="Messages")
Responses = dict[int | str, dict[str, str | dict[str, dict[str, Any]]]]
RAW_RESPONSES: Responses = {
    200: {
        "description": "the original MIME",
        "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
    },
    404: {"description": "Not found"},
}
# Attachment types served as themselves (inline): passive formats a browser renders without
# running anything from our origin. Everything else is application/octet-stream, attachment.
INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"}
    | {"application/pdf", "text/plain"}
)
OCTET_STREAM = "application/octet-stream"
# Attachments and the raw message: no script, no subresource, a unique origin.
SANDBOX_CSP = "default-src 'none'; sandbox"
# Largest part index a 32-bit integer column holds; larger ones are no attachment (404).
MAX_PART_INDEX = 2**31 - 1
ATTACHMENT_RESPONSES: Responses = {
    200: {
        "description": "the attachment's bytes: inline if its type is passive, else as bytes",
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}}
            for t in sorted(INLINE_TYPES | {OCTET_STREAM})
        },
    },
    404: {"description": "Not found"},
}
# Page size of message lists: enough for a screen, small enough to answer in milliseconds.
DEFAULT_MESSAGE_PAGE = 50


class FolderOut(BaseModel):
    """A folder with its role and counters."""

    id: uuid.UUID
    name: str
    role: str | None
    delimiter: str | None
    subscribed: bool = Field(description="\\Subscribed in LIST (servers with LIST-EXTENDED)")
    message_count: int
    unread_count: int
    synced_at: datetime | None


class FolderList(BaseModel):
    """An account's folders."""

    items: list[FolderOut]


class AddressOut(BaseModel):
    """A parsed address."""

    name: str
    email: str


class MessageSummary(BaseModel):
    """A message as a list shows it."""

    id: uuid.UUID
    account_id: uuid.UUID
    folder_id: uuid.UUID
    thread_id: str | None
    subject: str
    sender: AddressOut | None = Field(description="first From address")
    to: list[AddressOut]
    received_date: datetime
    sent_at: datetime | None
    flags: list[str]
    seen: bool
    flagged: bool
    answered: bool
    has_attachments: bool
    snippet: str
    size: int


class MessagePage(BaseModel):
    """A page of messages, newest first."""

    items: list[MessageSummary]
    next_cursor: str | None


class AttachmentOut(BaseModel):
    """One attachment; ``url`` streams its bytes."""

    index: int
    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    inline: bool
    url: str


class MessageOut(MessageSummary):
    """One message with bodies and attachments."""

    folder: str
    message_id_header: str | None
    in_reply_to: str | None
    references: list[str]
    cc: list[AddressOut]
    bcc: list[AddressOut]
    reply_to: list[AddressOut]
    text: str | None
    html: str | None = Field(description="sanitized; remote images blocked into data-remote-src")
    remote_images: int
    remote_images_blocked: int
    attachments: list[AttachmentOut]
    parse_error: str | None
    list_headers: ListFields = Field(description="List-Unsubscribe and the like, parsed")


class ThreadOut(BaseModel):
    """A conversation across folders, oldest first."""

    id: str
    items: list[MessageSummary]


class MessageQuery(QueryInput):
    """Filters and paging of the message list."""

    account_id: uuid.UUID | None = None
    folder_id: uuid.UUID | None = None
    thread_id: str | None = Field(None, max_length=64)
    seen: bool | None = None
    flagged: bool | None = None
    answered: bool | None = None
    has_attachments: bool | None = None
    after: datetime | None = Field(None, description="received at or after (ISO 8601)")
    before: datetime | None = Field(None, description="received before (ISO 8601)")
    limit: int = Field(DEFAULT_MESSAGE_PAGE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(None, max_length=512)


class RenderQuery(QueryInput):
    """Display options of one message."""

    remote_images: bool = Field(False, description="keep remote images (tracking pixels too)")


@bp.get("/accounts/<uuid:account_id>/folders")
@bp.output(FolderList)
@bp.doc(responses=[404])
def list_folders(account_id: uuid.UUID) -> FolderList:
    """The account's folders with role, message and unread counts."""
    with runtime().db.session() as session:
        rows = messages.list_folders(session, tenant_id(), account_id)
        return FolderList(items=[FolderOut.model_validate(messages.folder_view(r)) for r in rows])


@bp.get("/messages")
@bp.input(MessageQuery, location="query", arg_name="query")
@bp.output(MessagePage)
def list_messages(query: MessageQuery) -> Response:
    """Messages, newest first, filtered; follow ``next_cursor`` for more."""
    flt = messages.MessageFilter(**query.model_dump(exclude={"limit", "cursor"}))
    with runtime().db.rows() as conn:
        page = messages.list_messages(conn, tenant_id(), flt, query.limit, query.cursor)
    items = [messages.summary_view(r) for r in page.items]
    # summary_view writes MessageSummary's fields in its order (tests/unit/test_built_json.py)
    return built_json({"items": items, "next_cursor": page.next_cursor})


@bp.get("/messages/<uuid:message_id>")
@bp.input(RenderQuery, location="query", arg_name="query")
@bp.output(MessageOut)
@bp.doc(responses=[404])
def get_message(message_id: uuid.UUID, query: RenderQuery) -> MessageOut:
    """One message: addresses, dates, flags, text, sanitized HTML, attachments."""
    base = url_for(".get_attachment", message_id=message_id, index=0)[:-1]
    with runtime().db.session() as session:
        shown = messages.render(
            session, tenant_id(), message_id, base, block_remote_images=not query.remote_images
        )
        return MessageOut.model_validate(messages.detail_view(shown, base))


@bp.get("/messages/<uuid:message_id>/raw")
@bp.doc(responses=RAW_RESPONSES, operation_id="get_raw_message")
def get_raw(message_id: uuid.UUID) -> Response:
    """The message exactly as the server has it."""
    rt = runtime()
    with rt.db.session() as session:
        data = messages.raw_message(
            session, tenant_id(), message_id, gateways.blob_store(rt, tenant_id())
        )
    return Response(
        data,
        mimetype="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="{message_id}.eml"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": SANDBOX_CSP,
        },
    )


@bp.get("/messages/<uuid:message_id>/attachments/<int:index>")
@bp.doc(responses=ATTACHMENT_RESPONSES)
def get_attachment(message_id: uuid.UUID, index: int) -> Response:
    """One attachment, decoded, with its content type and a safe file name."""
    if not 0 <= index <= MAX_PART_INDEX:  # a part index the database column cannot hold
        raise NotFoundError("no such attachment", index=index)
    rt = runtime()
    with rt.db.session() as session:
        info, data, filename = messages.attachment(
            session, tenant_id(), message_id, index, gateways.blob_store(rt, tenant_id())
        )
    mimetype = served_type(info.content_type)
    kind = "inline" if mimetype != OCTET_STREAM else "attachment"
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = content_disposition(filename, kind)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = SANDBOX_CSP
    return response


def content_disposition(filename: str, kind: str = "attachment") -> str:
    """``kind`` with an ASCII fallback name and the exact one (RFC 6266, RFC 8187)."""
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = "".join(c if c.isalnum() or c in " ._-()" else "_" for c in fallback).strip()
    return (
        f'{kind}; filename="{fallback or "attachment"}"; '
        f"filename*=UTF-8''{quote(filename, safe='')}"
    )


def served_type(content_type: str) -> str:
    """The type an attachment is served as: its own if passive (allow-list), else bytes."""
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence if essence in INLINE_TYPES else OCTET_STREAM


@bp.get("/threads/<string:thread_id>")
@bp.output(ThreadOut)
@bp.doc(responses=[404])
def get_thread(thread_id: str) -> ThreadOut:
    """Every message of a conversation, across folders, oldest first."""
    with runtime().db.session() as session:
        rows = messages.thread_messages(session, tenant_id(), thread_id)
        return ThreadOut(
            id=thread_id,
            items=[MessageSummary.model_validate(messages.summary_view(r)) for r in rows],
        )


Keyword = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9$_.\-]+$")]


class MessageChange(StrictInput):
    """Flags to set or clear, keywords to add or remove, a folder to move to."""

    seen: bool | None = None
    flagged: bool | None = None
    answered: bool | None = None
    add_keywords: list[Keyword] = Field(default_factory=list, max_length=20)
    remove_keywords: list[Keyword] = Field(default_factory=list, max_length=20)
    folder_id: JsonUUID | None = Field(None, description="move into this folder")


class BulkChange(MessageChange):
    """The same change for many messages, or their deletion."""

    ids: list[JsonUUID] = Field(min_length=1, max_length=500)
    delete: bool = False
    permanent: bool = Field(False, description="with delete: expunge instead of Trash")


class DeleteQuery(QueryInput):
    """How to delete."""

    permanent: bool = Field(False, description="expunge instead of moving to Trash")


class ChangeOut(BaseModel):
    """Jobs applying the change on the server; flags are already changed locally."""

    job_ids: list[str]
    items: list[MessageSummary]


def _change(
    body: MessageChange, ids: list[uuid.UUID], delete: bool = False, permanent: bool = False
) -> ChangeOut:
    requested = writeback.request_change(
        runtime(),
        tenant_id(),
        ids,
        flags={"seen": body.seen, "flagged": body.flagged, "answered": body.answered},
        add_keywords=body.add_keywords,
        remove_keywords=body.remove_keywords,
        move_to=body.folder_id,
        delete=delete,
        expunge=permanent,
    )
    items = [MessageSummary.model_validate(messages.summary_view(m)) for m in requested.messages]
    return ChangeOut(job_ids=requested.job_ids, items=items)


@bp.patch("/messages/<uuid:message_id>")
@bp.input(MessageChange, arg_name="body")
@bp.output(ChangeOut, status_code=202)
@bp.doc(responses=[404, 422])
def update_message(message_id: uuid.UUID, body: MessageChange) -> ChangeOut:
    """Set flags/keywords (at once, locally) and move; the server follows via a job."""
    return _change(body, [message_id])


@bp.delete("/messages/<uuid:message_id>")
@bp.input(DeleteQuery, location="query", arg_name="query")
@bp.output(ChangeOut, status_code=202)
@bp.doc(responses=[404])
def delete_message(message_id: uuid.UUID, query: DeleteQuery) -> ChangeOut:
    """Move to Trash, or expunge with ``permanent=true`` (or when already in Trash)."""
    return _change(MessageChange(), [message_id], delete=True, permanent=query.permanent)


@bp.post("/messages/bulk")
@bp.input(BulkChange, arg_name="body")
@bp.output(ChangeOut, status_code=202)
@bp.doc(responses=[404, 422])
def bulk_change(body: BulkChange) -> ChangeOut:
    """The same change (or deletion) for up to 500 messages."""
    return _change(body, body.ids, delete=body.delete, permanent=body.permanent)


class JobOut(BaseModel):
    """A queued job."""

    job_id: str


@bp.post("/messages/<uuid:message_id>/parse")
@bp.output(JobOut, status_code=202)
@bp.doc(responses=[404, 503])
def parse_message_body(message_id: uuid.UUID) -> JobOut:
    """Parse the message's bodies again from its raw MIME (parse_email_body)."""
    return JobOut(job_id=parsing.request_parse(runtime(), tenant_id(), message_id))
