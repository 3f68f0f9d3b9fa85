"""Sending in one request (``POST /api/send``): a message as compose fields, or as the
client built it (``message/rfc822``), queued in the outbox with the same guarantees as a
draft sent with ``POST /api/compose/send/{id}``: one transaction, one delivery, retries,
reconciliation, ``Idempotency-Key`` and ``send_at``.

Fields become a draft frozen into its outbox row at once (no Drafts copy is made: the
draft is never edited); the draft is gone once the message is sent, and editable again if
the send fails or is cancelled. A client's own message has no draft: its bytes go out as
they are, less the Bcc field (see ``mail/mime/raw.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from email_service.mail.mime.build import envelope_address
from email_service.mail.mime.raw import prepare_raw
from email_service.services.events import record as announce
from email_service.services.outgoing import compose, outbox
from email_service.services.outgoing.compose import DraftFields
from email_service.services.outgoing.outbox import Queued
from email_service.services.runtime import Runtime
from email_service.store.blobs import BlobStore
from email_service.store.change_log import Op
from email_service.store.models import Account, ComposeAttachment, Outbox, utcnow
from email_service.store.states import OutboxState


@dataclass(frozen=True)
class FileIn:
    """An attachment given with the message itself rather than uploaded first."""

    filename: str
    content_type: str | None
    data: bytes
    content_id: str | None = None


def send_fields(
    runtime: Runtime,
    tenant_id: str,
    fields: DraftFields,
    files: list[FileIn],
    key: str | None = None,
) -> Queued:
    """Queue a message written as compose fields (uploads by id, files inline)."""

    def make(session: Session, blobs: BlobStore, account: Account | None = None) -> Outbox:
        limit = runtime.settings.max_attachment_bytes
        ids = [
            compose.add_attachment(
                session, blobs, tenant_id, f.filename, f.content_type, f.data, limit, f.content_id
            ).id
            for f in files
        ]
        data = fields
        if ids:
            given = fields.given | {"attachments"}
            data = replace(fields, attachments=[*(fields.attachments or []), *ids], given=given)
        # The new draft is queued as it is made: no other request can know it yet.
        row_id = uuid.uuid4()
        draft, account = compose.new_draft(session, tenant_id, data, row_id, account)
        # No attachment given: none to read back.
        uploads: list[ComposeAttachment] | None = None if data.attachments else []
        return outbox.freeze(session, blobs, draft, key, account, uploads, row_id)

    if fields.in_reply_to or fields.forward_of:  # the account may be the original's
        return outbox.queue_new(runtime, tenant_id, key, make)
    return outbox.queue_from_account(runtime, tenant_id, fields.account_id, key, make)


def send_raw(
    runtime: Runtime,
    tenant_id: str,
    account_id: uuid.UUID | None,
    data: bytes,
    send_at: datetime | None = None,
    key: str | None = None,
) -> Queued:
    """Queue a message as the client built it, from the named (or first) account."""

    def make(session: Session, blobs: BlobStore, account: Account | None) -> Outbox:
        account = account or compose.sending_account(session, tenant_id, account_id)
        now = utcnow()
        raw = prepare_raw(data, account.email, now)
        row_id = uuid.uuid4()
        row = Outbox(
            id=row_id,
            tenant_id=tenant_id,
            account_id=account.id,
            draft_id=row_id,  # no draft (Outbox.without_draft)
            state=OutboxState.QUEUED,
            idempotency_key=key,
            message_id=raw.message_id,
            subject=raw.subject,
            sender=envelope_address(account.email),
            recipients=raw.recipients,
            mime_blob_sha256=blobs.put(raw.data),
            size=len(raw.data),
            send_at=send_at,
            next_attempt_at=max(send_at, now) if send_at else now,
            queued_at=now,
        )
        blobs.flush()
        session.add(row)
        session.flush()
        announce.outbox(session, tenant_id, account.id, row.id, row.state, Op.CREATED)
        return row

    return outbox.queue_from_account(runtime, tenant_id, account_id, key, make)
