"""Drafts and outbox rows as plain records for the API, and the text of an inline forward."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from email_service.store.models import ComposeAttachment, Draft, Message, Outbox
from email_service.store.states import DraftState


@dataclass(frozen=True)
class AttachmentRecord:
    """An uploaded file."""

    id: uuid.UUID
    draft_id: uuid.UUID | None
    filename: str
    content_type: str
    size: int
    content_id: str | None
    inline: bool
    created_at: datetime


@dataclass(frozen=True)
class DraftRecord:
    """A draft as the API shows it; ``state`` is ``editing`` or ``queued``."""

    id: uuid.UUID
    account_id: uuid.UUID
    to: list[dict[str, str]]
    cc: list[dict[str, str]]
    bcc: list[dict[str, str]]
    subject: str
    body: str | None
    html: str | None
    in_reply_to: uuid.UUID | None
    forward_of: uuid.UUID | None
    forward_mode: str | None
    references: list[str]
    attachments: list[AttachmentRecord]
    send_at: datetime | None
    state: str
    outbox_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class BounceRecord:
    """What a bounce said about one recipient of a send (services/sync/bounces.py)."""

    recipient: str
    action: str
    status: str
    diagnostic: str | None
    reported_at: datetime


def bounce_record(entry: dict[str, str | None]) -> BounceRecord:
    """A stored bounce entry as plain data."""
    return BounceRecord(
        recipient=str(entry["recipient"]),
        action=str(entry["action"]),
        status=str(entry["status"]),
        diagnostic=entry.get("diagnostic"),
        reported_at=datetime.fromisoformat(str(entry["reported_at"])),
    )


@dataclass(frozen=True)
class OutboxRecord:
    """One send request and where it stands."""

    id: uuid.UUID
    draft_id: uuid.UUID
    account_id: uuid.UUID
    state: str
    attempts: int
    message_id: str
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
    sent_copy: str | None
    created_at: datetime
    updated_at: datetime
    bounces: list[BounceRecord]


def attachment_record(row: ComposeAttachment) -> AttachmentRecord:
    """An upload as plain data."""
    return AttachmentRecord(
        id=row.id,
        draft_id=row.draft_id,
        filename=row.filename,
        content_type=row.content_type,
        size=row.size,
        content_id=row.content_id,
        inline=row.inline,
        created_at=row.created_at,
    )


def draft_record(row: Draft, uploads: list[ComposeAttachment]) -> DraftRecord:
    """A draft and its uploads as plain data."""
    return DraftRecord(
        id=row.id,
        account_id=row.account_id,
        to=list(row.to_addrs),
        cc=list(row.cc_addrs),
        bcc=list(row.bcc_addrs),
        subject=row.subject,
        body=row.body_text,
        html=row.body_html,
        in_reply_to=row.in_reply_to_id,
        forward_of=row.forward_of_id,
        forward_mode=row.forward_mode,
        references=list(row.references),
        attachments=[attachment_record(u) for u in uploads],
        send_at=row.send_at,
        state=DraftState.QUEUED if row.outbox_id else DraftState.EDITING,
        outbox_id=row.outbox_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def outbox_record(row: Outbox) -> OutboxRecord:
    """An outbox row as plain data."""
    return OutboxRecord(
        id=row.id,
        draft_id=row.draft_id,
        account_id=row.account_id,
        state=row.state,
        attempts=row.attempts,
        message_id=row.message_id,
        subject=row.subject,
        sender=row.sender,
        recipients=list(row.recipients),
        size=row.size,
        send_at=row.send_at,
        next_attempt_at=row.next_attempt_at,
        queued_at=row.queued_at,
        sent_at=row.sent_at,
        last_smtp_code=row.last_smtp_code,
        last_smtp_reply=row.last_smtp_reply,
        last_error=row.last_error,
        sent_copy=row.sent_copy,
        created_at=row.created_at,
        updated_at=row.updated_at,
        bounces=[bounce_record(entry) for entry in row.bounces or ()],
    )


def _names(addresses: list[dict[str, str]]) -> str:
    return ", ".join(
        f"{a.get('name')} <{a.get('email')}>" if a.get("name") else str(a.get("email"))
        for a in addresses
    )


def forwarded_text(original: Message) -> str:
    """The quoted block an inline forward appends to the body."""
    sender = _names([{"name": original.from_name or "", "email": original.from_email or ""}])
    when = original.sent_at or original.received_date
    lines = [
        "",
        "",
        "---------- Forwarded message ---------",
        f"From: {sender}",
        f"Date: {when.strftime('%a, %d %b %Y %H:%M %z')}",
        f"Subject: {original.subject}",
        f"To: {_names(original.to_addrs)}",
    ]
    if original.cc_addrs:
        lines.append(f"Cc: {_names(original.cc_addrs)}")
    return "\n".join([*lines, "", original.body_text or ""])
