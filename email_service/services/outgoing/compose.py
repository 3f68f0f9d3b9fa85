"""Drafts and uploaded attachments of one tenant: create, change, list, delete.

A draft is editable until it is queued for sending (``outbox_id`` set); a reply or forward
takes a snapshot of what it needs from the original when it is created (Message-ID,
References, raw bytes), so later changes to the mailbox do not change the draft.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from email_service.errors import ConflictError, NotFoundError, ValidationError
from email_service.mail.mime.build import (
    Mailbox,
    check_address,
    check_text,
    forward_subject,
    reply_references,
    reply_subject,
)
from email_service.mail.mime.parse import safe_filename
from email_service.services.events import record as announce
from email_service.services.messages import get_message
from email_service.services.outgoing import drafts as drafts_view
from email_service.services.outgoing.drafts import AttachmentRecord, DraftRecord
from email_service.services.paging import Page, decode_cursor, encode_cursor, older_than
from email_service.store.blobs import BlobStore
from email_service.store.change_log import Op
from email_service.store.models import Account, ComposeAttachment, Draft, Message, utcnow
from email_service.store.tenancy import not_found, tenant_row

# Mailbox and check_text for the API, which may not import mail
__all__ = ["DraftFields", "Mailbox", "check_text"]

# RFC 5321 §4.5.3.1.8: servers must take at least 100 recipients per message.
MAX_RECIPIENTS = 100
# An upload without a usable type is sent as opaque bytes (RFC 2046 §4.5.1).
DEFAULT_CONTENT_TYPE = "application/octet-stream"
FORWARD_MODES = ("attachment", "inline")
# The account a draft sends from, named or the tenant's first (statements built once).
_NAMED_ACCOUNT = select(Account).where(
    Account.tenant_id == bindparam("tenant"), Account.id == bindparam("account")
)
_FIRST_ACCOUNT = (
    select(Account)
    .where(Account.tenant_id == bindparam("tenant"))
    .order_by(Account.created_at, Account.id)
    .limit(1)
)


@dataclass(frozen=True)
class DraftFields:
    """What a client may set on a draft; fields not in ``given`` keep their value."""

    account_id: uuid.UUID | None = None
    to: list[Mailbox] = field(default_factory=list)
    cc: list[Mailbox] = field(default_factory=list)
    bcc: list[Mailbox] = field(default_factory=list)
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    in_reply_to: uuid.UUID | None = None
    forward_of: uuid.UUID | None = None
    forward_mode: str = "attachment"
    attachments: list[uuid.UUID] | None = None
    send_at: datetime | None = None
    given: frozenset[str] = frozenset()


def _check_fields(data: DraftFields) -> None:
    for role in ("to", "cc", "bcc"):
        for box in getattr(data, role):
            check_text(box.name, f"{role}.name")
            check_address(box.email, role)
    if len(data.to) + len(data.cc) + len(data.bcc) > MAX_RECIPIENTS:
        raise ValidationError(f"at most {MAX_RECIPIENTS} recipients per message", field="to")
    if data.subject is not None:
        check_text(data.subject, "subject")
    if data.forward_mode not in FORWARD_MODES:
        raise ValidationError(f"forward_mode is one of {FORWARD_MODES}", field="forward_mode")
    if data.in_reply_to and data.forward_of:
        raise ValidationError("a draft replies or forwards, not both", field="forward_of")


def sending_account(session: Session, tenant_id: str, account_id: uuid.UUID | None) -> Account:
    """The tenant's account to send from: the one named, else the first registered."""
    if account_id is not None:
        named = session.scalar(_NAMED_ACCOUNT, {"tenant": tenant_id, "account": account_id})
        if named is None:
            raise not_found(Account, account_id=str(account_id))
        return named
    first = session.scalar(_FIRST_ACCOUNT, {"tenant": tenant_id})
    if first is None:
        raise ValidationError("register an account before composing", field="account_id")
    return first


def _load(session: Session, tenant_id: str, draft_id: uuid.UUID) -> Draft:
    return tenant_row(session, Draft, tenant_id, draft_id, draft_id=str(draft_id))


def _boxes(boxes: list[Mailbox]) -> list[dict[str, str]]:
    return [{"email": b.email, "name": b.name} for b in boxes]


def create_draft(session: Session, tenant_id: str, data: DraftFields) -> DraftRecord:
    """A new draft; a reply or forward fills what the client left out from the original."""
    row, _account = new_draft(session, tenant_id, data)
    if not data.attachments:  # the common case: nothing more to read
        return drafts_view.draft_record(row, [])
    return get_draft(session, tenant_id, row.id)


def new_draft(
    session: Session,
    tenant_id: str,
    data: DraftFields,
    outbox_id: uuid.UUID | None = None,
    account: Account | None = None,
) -> tuple[Draft, Account]:
    """:func:`create_draft`'s row, with the account it sends from (``outbox_id``: made
    already queued for that send, as ``POST /api/send`` does; ``account``: the one
    :func:`sending_account` gives for ``data.account_id``, when the caller has it and the
    draft neither replies nor forwards)."""
    _check_fields(data)
    original = _original(session, tenant_id, data)
    if account is None or original is not None:
        account_id = data.account_id or (original.account_id if original else None)
        account = sending_account(session, tenant_id, account_id)
    row = Draft(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        account_id=account.id,
        outbox_id=outbox_id,
        **_new_draft_defaults(),
    )
    _apply(row, data)
    if original is not None:
        _from_original(row, original, data)
    session.add(row)
    if outbox_id is None or data.attachments:  # one queued at once is flushed with its send
        session.flush()
    announce.draft(session, row, Op.CREATED)
    if data.attachments:
        _attach(session, tenant_id, row, data.attachments)
    return row, account


def _new_draft_defaults() -> dict[str, Any]:
    """The column defaults a new draft reads before its INSERT (the ORM fills them only then)."""
    return {"to_addrs": [], "cc_addrs": [], "bcc_addrs": [], "subject": "", "references": []}


def _original(session: Session, tenant_id: str, data: DraftFields) -> Message | None:
    source = data.in_reply_to or data.forward_of
    if source is None:
        return None
    try:
        return get_message(session, tenant_id, source)
    except NotFoundError:
        field_name = "in_reply_to" if data.in_reply_to else "forward_of"
        raise NotFoundError("message not found", field=field_name) from None


def _apply(row: Draft, data: DraftFields) -> None:
    for role, column in (("to", "to_addrs"), ("cc", "cc_addrs"), ("bcc", "bcc_addrs")):
        if role in data.given:
            setattr(row, column, _boxes(getattr(data, role)))
    simple = {"subject": "subject", "text": "body_text", "html": "body_html", "send_at": "send_at"}
    for name, column in simple.items():
        if name in data.given:
            value = getattr(data, name)
            setattr(row, column, "" if name == "subject" and value is None else value)


def _from_original(row: Draft, original: Message, data: DraftFields) -> None:
    """Snapshot what replying to or forwarding ``original`` needs (RFC 5322 §3.6.4)."""
    if data.in_reply_to is not None:
        row.in_reply_to_id = original.id
        row.reply_message_id = original.message_id
        if original.message_id:
            parents = original.references or (
                [original.in_reply_to] if original.in_reply_to else []
            )
            row.references = reply_references(original.message_id, parents)
        if "subject" not in data.given:
            row.subject = reply_subject(original.subject)
        if "to" not in data.given:
            row.to_addrs = original.reply_to or (
                [{"email": original.from_email, "name": original.from_name or ""}]
                if original.from_email
                else []
            )
        return
    row.forward_of_id = original.id
    row.forward_mode = data.forward_mode
    if "subject" not in data.given:
        row.subject = forward_subject(original.subject)
    if data.forward_mode == "attachment":
        row.forward_blob_sha256 = original.blob_sha256
    else:
        row.body_text = (row.body_text or "") + drafts_view.forwarded_text(original)


def _attach(session: Session, tenant_id: str, row: Draft, ids: list[uuid.UUID]) -> None:
    """Make exactly ``ids`` the draft's attachments (they must be this tenant's uploads)."""
    wanted = set(ids)
    found = list(
        session.scalars(
            select(ComposeAttachment).where(
                ComposeAttachment.tenant_id == tenant_id, ComposeAttachment.id.in_(wanted)
            )
        )
    )
    if len(found) != len(wanted):
        raise NotFoundError("attachment not found", field="attachments")
    for upload in found:
        if upload.draft_id not in (None, row.id):
            raise ConflictError("attachment belongs to another draft", field="attachments")
        upload.draft_id = row.id
    current = session.scalars(select(ComposeAttachment).where(ComposeAttachment.draft_id == row.id))
    for upload in current:
        if upload.id not in wanted:
            session.delete(upload)
    session.flush()


def update_draft(
    session: Session, tenant_id: str, draft_id: uuid.UUID, data: DraftFields
) -> DraftRecord:
    """Change the given fields; a draft queued for sending is 409 until cancelled."""
    _check_fields(data)
    row = _load(session, tenant_id, draft_id)
    if row.outbox_id is not None:
        raise ConflictError("the draft is queued for sending; cancel it first")
    if "account_id" in data.given and data.account_id is not None:
        row.account_id = sending_account(session, tenant_id, data.account_id).id
    _apply(row, data)
    row.updated_at = utcnow()  # also when only the attachments changed
    if data.attachments is not None:
        _attach(session, tenant_id, row, data.attachments)
    session.flush()
    announce.draft(session, row, Op.UPDATED)
    return get_draft(session, tenant_id, row.id)


def get_draft(session: Session, tenant_id: str, draft_id: uuid.UUID) -> DraftRecord:
    """One draft of this tenant with its attachments."""
    row = _load(session, tenant_id, draft_id)
    uploads = session.scalars(
        select(ComposeAttachment)
        .where(ComposeAttachment.draft_id == row.id)
        .order_by(ComposeAttachment.created_at, ComposeAttachment.id)
    )
    return drafts_view.draft_record(row, list(uploads))


def list_drafts(
    session: Session, tenant_id: str, limit: int, cursor: str | None = None
) -> Page[DraftRecord]:
    """This tenant's drafts, most recently changed first, in keyset pages."""
    query = select(Draft.id, Draft.updated_at).where(Draft.tenant_id == tenant_id)
    if cursor:
        at, key = decode_cursor(cursor)
        after = _uuid(key)
        query = query.where(older_than(Draft.updated_at, Draft.id, at, after))
    rows = session.execute(
        query.order_by(Draft.updated_at.desc(), Draft.id.desc()).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [get_draft(session, tenant_id, draft_id) for draft_id, _at in rows]
    next_cursor = encode_cursor(rows[-1][1], str(rows[-1][0])) if more else None
    return Page(items, next_cursor)


def _uuid(key: str) -> uuid.UUID:
    try:
        return uuid.UUID(key)
    except ValueError:
        raise ValidationError("invalid cursor", field="cursor") from None


def draft_account(session: Session, tenant_id: str, draft_id: uuid.UUID) -> uuid.UUID | None:
    """The account a draft belongs to now (None if there is no such draft)."""
    return session.scalar(
        select(Draft.account_id).where(Draft.tenant_id == tenant_id, Draft.id == draft_id)
    )


def delete_draft(session: Session, tenant_id: str, draft_id: uuid.UUID) -> uuid.UUID:
    """Remove a draft and its uploads (409 while queued for sending); returns its account."""
    row = _load(session, tenant_id, draft_id)
    if row.outbox_id is not None:
        raise ConflictError("the draft is queued for sending; cancel it first")
    account_id = row.account_id
    announce.draft(session, row, Op.DESTROYED)
    session.delete(row)
    session.flush()
    return account_id


def add_attachment(
    session: Session,
    blobs: BlobStore,
    tenant_id: str,
    filename: str,
    content_type: str | None,
    data: bytes,
    max_bytes: int,
    content_id: str | None = None,
) -> AttachmentRecord:
    """Store an upload in the blob store; attach it to a draft by listing its id there."""
    if len(data) > max_bytes:
        raise ValidationError(
            f"attachment over {max_bytes} bytes (MAX_ATTACHMENT_BYTES)", field="file"
        )
    check_text(filename, "filename")
    kind = (content_type or DEFAULT_CONTENT_TYPE).split(";")[0].strip().lower()
    check_text(kind, "content_type")
    if content_id is not None:
        check_text(content_id, "content_id")
    row = ComposeAttachment(
        tenant_id=tenant_id,
        filename=safe_filename(filename, "attachment"),
        content_type=kind if "/" in kind else DEFAULT_CONTENT_TYPE,
        size=len(data),
        blob_sha256=blobs.put(data),
        content_id=content_id.strip("<>") if content_id else None,
        inline=content_id is not None,
    )
    blobs.flush()
    session.add(row)
    session.flush()
    return drafts_view.attachment_record(row)


def delete_attachment(
    session: Session, tenant_id: str, attachment_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Remove an upload (and from its draft); the blob stays while others share it.

    Returns the draft and account it was attached to, whose copy is now out of date.
    """
    row = tenant_row(session, ComposeAttachment, tenant_id, attachment_id)
    draft = _load(session, tenant_id, row.draft_id) if row.draft_id is not None else None
    if draft is not None and draft.outbox_id:
        raise ConflictError("the draft is queued for sending; cancel it first")
    session.delete(row)
    if draft is None:
        session.flush()
        return None
    draft.updated_at = utcnow()  # the draft changed: its Drafts copy is replaced
    session.flush()
    announce.draft(session, draft, Op.UPDATED)
    return draft.id, draft.account_id
