"""/api/send: one request to send a message, as compose fields or as ``message/rfc822``
(docs/sending.md); the answer is the outbox row, as for a sent draft."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from apiflask import APIBlueprint
from flask import request

from email_service.api.http.context import runtime, tenant_id
from email_service.api.outgoing.compose import accepted, draft_fields, idempotency_key
from email_service.api.outgoing.compose_schemas import OutboxOut, RawSendQuery, SendIn
from email_service.errors import BadRequestError, ValidationError
from email_service.services.outgoing import send_now

bp = APIBlueprint("send", __name__, url_prefix="/api/send", tag="Compose")
RAW_TYPE = "message/rfc822"


@bp.post("")
@bp.input(SendIn, arg_name="body")
@bp.output(OutboxOut, status_code=202)
@bp.doc(responses=[400, 404, 409, 422, 503])
def send_message(body: SendIn) -> tuple[Any, int, dict[str, str]]:
    """Send a message in one request; ``Idempotency-Key`` makes a repeat answer the first."""
    files = [_file(n, f) for n, f in enumerate(body.files)]
    fields = draft_fields(body, exclude=frozenset({"files"}))
    queued = send_now.send_fields(runtime(), tenant_id(), fields, files, idempotency_key())
    return accepted(queued)


@bp.post("/raw")
@bp.input(RawSendQuery, location="query", arg_name="query")
@bp.output(OutboxOut, status_code=202)
@bp.doc(
    responses=[400, 404, 409, 413, 415, 422, 503],
    description="The request body is the whole message, `Content-Type: message/rfc822`.",
)
def send_raw(query: RawSendQuery) -> tuple[Any, int, dict[str, str]]:
    """Send a message as the client built it; its Bcc field is removed, not sent."""
    if request.mimetype != RAW_TYPE:
        raise BadRequestError(f"the body must be {RAW_TYPE}", field="Content-Type")
    queued = send_now.send_raw(
        runtime(),
        tenant_id(),
        query.account_id,
        request.get_data(cache=False),
        query.send_at,
        idempotency_key(),
    )
    return accepted(queued)


def _file(index: int, given: Any) -> send_now.FileIn:
    try:
        data = base64.b64decode(given.data, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("not base64", field=f"files.{index}.data") from None
    return send_now.FileIn(given.filename, given.content_type, data, given.content_id)
