"""Request and response shapes of /api/compose and /api/outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from apiflask.fields import UploadFile
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from email_service.api.http.schemas import MAX_PAGE_SIZE, EmailAddress, QueryInput, StrictInput
from email_service.services.outgoing.compose import check_text
from email_service.store.states import DraftState, OutboxState, SentCopyState

# JSON carries ids and times as strings: strict models would refuse them.
Id = Annotated[uuid.UUID, Field(strict=False)]
# A subject is one header line once unfolded; 998 octets is the RFC 5322 §2.1.1 limit.
MAX_SUBJECT = 998
# Bodies: large enough for any letter, bounded so one request cannot fill the database.
MAX_BODY_CHARS = 5_000_000
# Same bound as the service's MAX_RECIPIENTS, per field (the service checks the sum).
MAX_RECIPIENTS = 100


def _one_line(value: object, info: ValidationInfo) -> object:
    """CR, LF or NUL (raw or RFC 2047-encoded) in a header-bound field: 400, not 422.

    HeaderInjectionError is not a ValueError, so pydantic lets it through to the error
    handler instead of folding it into a validation error.
    """
    if isinstance(value, str):
        check_text(value, info.field_name or "header")
    return value


OneLine = BeforeValidator(_one_line)
Name = Annotated[str, OneLine, Field(max_length=200)]
Address = Annotated[EmailAddress, OneLine]
Subject = Annotated[str, OneLine, Field(max_length=MAX_SUBJECT)]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("send_at needs a time zone, e.g. 2026-11-21T09:00:00Z")
    return value


SendAt = Annotated[datetime | None, Field(strict=False), AfterValidator(_aware)]


class AddressIn(StrictInput):
    """An address with a display name."""

    email: Address
    name: Name = ""


Recipient = Address | AddressIn
Recipients = Annotated[list[Recipient], Field(max_length=MAX_RECIPIENTS)]


class ComposeIn(StrictInput):
    """A message to write: ``{to, cc, bcc, subject, body}`` and more."""

    account_id: Id | None = Field(None, description="sending account; default: the first")
    to: Recipients = Field(default_factory=list, description="addresses or {email, name}")
    cc: Recipients = Field(default_factory=list)
    bcc: Recipients = Field(default_factory=list)
    subject: Subject | None = None
    body: str | None = Field(None, max_length=MAX_BODY_CHARS, description="plain text")
    html: str | None = Field(None, max_length=MAX_BODY_CHARS)
    in_reply_to: Id | None = Field(None, description="id of the message replied to")
    forward_of: Id | None = Field(None, description="id of the message forwarded")
    forward_mode: Literal["attachment", "inline"] = "attachment"
    attachments: list[Id] | None = Field(None, max_length=100, description="upload ids")
    send_at: SendAt = Field(None, description="send later (ISO 8601 with a zone)")


class DraftSaveIn(ComposeIn):
    """Save a draft: with ``id`` the given fields of that draft change, else a new one."""

    id: Id | None = None


class DraftUpdateIn(StrictInput):
    """Fields of a draft to change; absent fields keep their value."""

    account_id: Id | None = None
    to: Recipients | None = None
    cc: Recipients | None = None
    bcc: Recipients | None = None
    subject: Subject | None = None
    body: str | None = Field(None, max_length=MAX_BODY_CHARS)
    html: str | None = Field(None, max_length=MAX_BODY_CHARS)
    attachments: list[Id] | None = Field(None, max_length=100)
    send_at: SendAt = None


class UploadIn(BaseModel):
    """A multipart upload: the file, and a Content-ID to use it as an inline image."""

    model_config = ConfigDict(extra="forbid")

    file: UploadFile
    content_id: Annotated[str, OneLine] | None = Field(
        None, max_length=200, description="for cid: in the HTML"
    )


class RecipientOut(BaseModel):
    """A recipient of a draft, with its display name."""

    email: str
    name: str = ""


class UploadOut(BaseModel):
    """An uploaded file."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    draft_id: uuid.UUID | None
    filename: str
    content_type: str
    size: int
    content_id: str | None
    inline: bool
    created_at: datetime


class DraftOut(BaseModel):
    """A draft; ``state`` is ``editing`` or ``queued`` (then ``outbox_id`` says where)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    account_id: uuid.UUID
    to: list[RecipientOut]
    cc: list[RecipientOut]
    bcc: list[RecipientOut]
    subject: str
    body: str | None
    html: str | None
    in_reply_to: uuid.UUID | None
    forward_of: uuid.UUID | None
    forward_mode: str | None
    references: list[str]
    attachments: list[UploadOut]
    send_at: datetime | None
    state: DraftState
    outbox_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class DraftPage(BaseModel):
    """A page of drafts, most recently changed first."""

    items: list[DraftOut]
    next_cursor: str | None


class BounceOut(BaseModel):
    """What a bounce (a delivery status notification) said about one recipient."""

    model_config = ConfigDict(from_attributes=True)

    recipient: str = Field(description="the recipient as addressed, when the report says so")
    action: Literal["failed", "delayed"] = Field(description="RFC 3464 section 2.3.3")
    status: str = Field(description="RFC 3463 status code, e.g. 5.1.1")
    diagnostic: str | None = Field(description="the remote server's reply, if reported")
    reported_at: datetime = Field(description="when the bounce was synced")


class OutboxOut(BaseModel):
    """One send and where it stands, with the SMTP server's last answer."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    draft_id: uuid.UUID
    account_id: uuid.UUID
    state: OutboxState
    attempts: int
    message_id: str = Field(description="the Message-ID header sent")
    subject: str
    sender: str
    recipients: list[str]
    size: int
    send_at: datetime | None
    next_attempt_at: datetime | None
    queued_at: datetime
    sent_at: datetime | None
    last_smtp_code: int | None
    last_smtp_reply: str | None
    last_error: str | None
    sent_copy: SentCopyState | None
    created_at: datetime
    updated_at: datetime
    bounces: list[BounceOut] = Field(
        description="failed or delayed recipients reported by bounces; state `bounced` "
        "when every recipient failed"
    )


class OutboxPage(BaseModel):
    """A page of sends, newest first."""

    items: list[OutboxOut]
    next_cursor: str | None


class OutboxQuery(QueryInput):
    """Paging and a state filter."""

    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(None, max_length=512)
    state: OutboxState | None = None


# Files given with a message: as many as a draft may list, base64 inside the JSON body
# (MAX_REQUEST_BYTES bounds the whole request).
MAX_INLINE_FILES = 20


class FileIn(StrictInput):
    """An attachment carried in the request, its bytes in base64 (RFC 4648 §4)."""

    filename: Annotated[str, OneLine, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, OneLine, Field(max_length=255)] = "application/octet-stream"
    data: str = Field(description="the file's bytes, base64")
    content_id: Annotated[str, OneLine, Field(max_length=255)] | None = Field(
        None, description="makes it an inline image for <img src='cid:...'>"
    )


class SendIn(ComposeIn):
    """A message to send now (or at ``send_at``): compose fields, uploads by id in
    ``attachments`` and files in ``files``."""

    files: list[FileIn] = Field(default_factory=list, max_length=MAX_INLINE_FILES)


class RawSendQuery(QueryInput):
    """Where a ``message/rfc822`` body is sent from, and when."""

    account_id: uuid.UUID | None = Field(None, description="sending account; default: the first")
    send_at: SendAt = Field(None, description="send later (ISO 8601 with a zone)")
