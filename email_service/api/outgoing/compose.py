"""/api/compose: drafts, uploads and sending (docs/sending.md)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import request, url_for
from pydantic import BaseModel
from werkzeug.exceptions import RequestEntityTooLarge

from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.schemas import PageQuery
from email_service.api.outgoing.compose_schemas import (
    AddressIn,
    ComposeIn,
    DraftOut,
    DraftPage,
    DraftSaveIn,
    DraftUpdateIn,
    OutboxOut,
    UploadIn,
    UploadOut,
)
from email_service.errors import BadRequestError
from email_service.services import gateways
from email_service.services.outgoing import compose, draft_copy, outbox
from email_service.services.outgoing.compose import DraftFields
from email_service.services.outgoing.drafts import AttachmentRecord, DraftRecord

bp = APIBlueprint("compose", __name__, url_prefix="/api/compose", tag="Compose")
# Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): an opaque string; printable
# ASCII without spaces keeps it safe to log and to store.
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")
# Body fields that map onto draft columns under another name.
RENAMED = {"body": "text"}


def draft_fields(body: BaseModel, exclude: frozenset[str] = frozenset()) -> DraftFields:
    """The draft fields a request body gives (only those it names)."""
    given = body.model_fields_set - {"id"} - exclude
    values: dict[str, Any] = {}
    for name in given:
        value = getattr(body, name)
        if name in ("to", "cc", "bcc"):
            value = [_mailbox(v) for v in value or []]
        values[RENAMED.get(name, name)] = value
    names = frozenset(RENAMED.get(n, n) for n in given)
    return DraftFields(**values, given=names)


def _mailbox(value: str | AddressIn) -> compose.Mailbox:
    if isinstance(value, AddressIn):
        return compose.Mailbox(value.email, value.name)
    return compose.Mailbox(value)


def _copy_to_imap(record: DraftRecord, *earlier: uuid.UUID | None) -> DraftRecord:
    """Queue the copy in the Drafts folder (and, at once, its removal from an account it
    left)."""
    accounts = [a for a in earlier if a is not None and a != record.account_id]
    draft_copy.enqueue(runtime(), tenant_id(), record.id, *accounts)
    draft_copy.save_later(runtime(), tenant_id(), record.id, record.account_id)
    return record


def _created(record: DraftRecord) -> tuple[DraftRecord, int, dict[str, str]]:
    return record, 201, {"Location": url_for(".get_draft", draft_id=record.id)}


@bp.post("")
@bp.input(ComposeIn, arg_name="body")
@bp.output(DraftOut, status_code=201)
@bp.doc(responses=[400, 404, 409, 422])
def compose_message(body: ComposeIn) -> tuple[DraftRecord, int, dict[str, str]]:
    """Compose a new email: a draft to send with ``POST /api/compose/send/{id}``."""
    with runtime().db.session() as session:
        record = compose.create_draft(session, tenant_id(), draft_fields(body))
    return _created(_copy_to_imap(record))


@bp.post("/draft")
@bp.input(DraftSaveIn, arg_name="body")
@bp.output(DraftOut, status_code=201)
@bp.doc(responses=[200, 400, 404, 409, 422])
def save_draft(body: DraftSaveIn) -> tuple[DraftRecord, int, dict[str, str]] | DraftRecord:
    """Save a draft: 201 for a new one, 200 when ``id`` names one to change."""
    with runtime().db.session() as session:
        if body.id is None:
            record = compose.create_draft(session, tenant_id(), draft_fields(body))
        else:
            before = compose.draft_account(session, tenant_id(), body.id)
            record = compose.update_draft(session, tenant_id(), body.id, draft_fields(body))
    if body.id is None:  # queued after the commit, so the job reads what was saved
        return _created(_copy_to_imap(record))
    return _copy_to_imap(record, before), 200, {}


@bp.get("/drafts")
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(DraftPage)
def list_drafts(query: PageQuery) -> DraftPage:
    """This tenant's drafts, most recently changed first."""
    with runtime().db.session() as session:
        page = compose.list_drafts(session, tenant_id(), query.limit, query.cursor)
    items = [DraftOut.model_validate(r) for r in page.items]
    return DraftPage(items=items, next_cursor=page.next_cursor)


@bp.get("/drafts/<uuid:draft_id>")
@bp.output(DraftOut)
@bp.doc(responses=[404])
def get_draft(draft_id: uuid.UUID) -> DraftRecord:
    """One draft with its attachments."""
    with runtime().db.session() as session:
        return compose.get_draft(session, tenant_id(), draft_id)


@bp.put("/drafts/<uuid:draft_id>")
@bp.input(DraftUpdateIn, arg_name="body")
@bp.output(DraftOut)
@bp.doc(responses=[400, 404, 409, 422])
def update_draft(draft_id: uuid.UUID, body: DraftUpdateIn) -> DraftRecord:
    """Change the given fields; 409 while the draft is queued for sending."""
    with runtime().db.session() as session:
        before = compose.draft_account(session, tenant_id(), draft_id)
        record = compose.update_draft(session, tenant_id(), draft_id, draft_fields(body))
    return _copy_to_imap(record, before)


@bp.delete("/drafts/<uuid:draft_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[404, 409])
def delete_draft(draft_id: uuid.UUID) -> tuple[str, int]:
    """Discard a draft and its uploads; 409 while it is queued for sending."""
    with runtime().db.session() as session:
        account_id = compose.delete_draft(session, tenant_id(), draft_id)
    draft_copy.enqueue(runtime(), tenant_id(), draft_id, account_id)
    return "", 204


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` header, checked."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequestError(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            field="Idempotency-Key",
            location="headers",
        )
    return key


@bp.post("/send/<uuid:draft_id>")
@bp.output(OutboxOut, status_code=202)
@bp.doc(responses=[400, 404, 409, 422, 503])
def send_draft(draft_id: uuid.UUID) -> tuple[Any, int, dict[str, str]]:
    """Queue the draft for sending; the same ``Idempotency-Key`` returns the first answer."""
    queued = outbox.queue_send(runtime(), tenant_id(), draft_id, idempotency_key())
    if queued.created:  # the draft's deferred Drafts copy has nothing left to do
        draft_copy.drop_save(runtime(), queued.record.draft_id, queued.record.account_id)
    return accepted(queued)


def accepted(queued: outbox.Queued) -> tuple[Any, int, dict[str, str]]:
    """202 with the outbox row; a replayed Idempotency-Key says so."""
    headers = {"Location": url_for("outbox.get_outbox", outbox_id=queued.record.id)}
    if not queued.created:
        headers["Idempotent-Replayed"] = "true"
    return queued.record, 202, headers


@bp.post("/attachments")
@bp.input(UploadIn, location="files", arg_name="form")
@bp.output(UploadOut, status_code=201)
@bp.doc(responses=[400, 413, 422])
def upload_attachment(form: UploadIn) -> tuple[AttachmentRecord, int]:
    """Upload a file (multipart ``file``); list its id in a draft's ``attachments``."""
    rt = runtime()
    limit = rt.settings.max_attachment_bytes
    data = form.file.stream.read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge(f"attachment over {limit} bytes (MAX_ATTACHMENT_BYTES)")
    with rt.db.session() as session:
        record = compose.add_attachment(
            session,
            gateways.blob_store(rt, tenant_id()),
            tenant_id(),
            form.file.filename or "attachment",
            form.file.mimetype,
            data,
            limit,
            content_id=form.content_id,
        )
    return record, 201


@bp.delete("/attachments/<uuid:attachment_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[404, 409])
def delete_attachment(attachment_id: uuid.UUID) -> tuple[str, int]:
    """Remove an upload (also from its draft)."""
    with runtime().db.session() as session:
        owner = compose.delete_attachment(session, tenant_id(), attachment_id)
    if owner is not None:
        draft_copy.save_later(runtime(), tenant_id(), *owner)
    return "", 204
