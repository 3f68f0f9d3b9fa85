"""GET /api/messages/{id}/headers: every header field in order, and the parsed ones;
POST /api/messages/{id}/unsubscribe: act on List-Unsubscribe (RFC 8058 one-click or mailto:)."""

from __future__ import annotations

import uuid
from typing import Literal

from apiflask import APIBlueprint
from pydantic import BaseModel, Field

from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.schemas import StrictInput
from email_service.services import gateways, headers
from email_service.services.outgoing import unsubscribe

bp = APIBlueprint("headers", __name__, url_prefix="/api/messages", tag="Messages")


class HeaderField(BaseModel):
    """One field, RFC 2047 words decoded, folding removed."""

    name: str
    value: str


class ListFields(BaseModel):
    """The fields a client acts on (RFC 2369, 8058, 2919, 3834, 8601)."""

    unsubscribe_http: list[str]
    unsubscribe_mailto: list[str]
    one_click: bool
    list_id: str | None
    auto_submitted: str | None
    precedence: str | None
    authentication_results: list[str]


class HeadersOut(BaseModel):
    """All header fields in order, and the parsed list and automation fields."""

    headers: list[HeaderField]
    parsed: ListFields


@bp.get("/<uuid:message_id>/headers")
@bp.output(HeadersOut)
@bp.doc(responses=[404])
def get_headers(message_id: uuid.UUID) -> HeadersOut:
    """The message's header fields in order, with List-Unsubscribe and the like parsed."""
    rt, tenant = runtime(), tenant_id()
    with rt.db.reading() as session:
        view = headers.message_headers(session, tenant, message_id, gateways.blob_store(rt, tenant))
    return HeadersOut(
        headers=[HeaderField(name=n, value=v) for n, v in view.fields],
        parsed=ListFields.model_validate(view.parsed, from_attributes=True),
    )


class UnsubscribeIn(StrictInput):
    """How to unsubscribe; by default one-click when offered, else mailto."""

    method: Literal["one_click", "mailto"] | None = None


class UnsubscribeOut(BaseModel):
    """What was set in motion; the message gets the keyword ``$Unsubscribed`` once done."""

    method: Literal["one_click", "mailto"]
    target: str = Field(description="the https URL posted to, or the mailto: URI")
    job_id: str | None = Field(description="one_click: the job that POSTs")
    outbox_id: uuid.UUID | None = Field(description="mailto: the request in the outbox")


@bp.post("/<uuid:message_id>/unsubscribe")
@bp.input(UnsubscribeIn, arg_name="body")
@bp.output(UnsubscribeOut, status_code=202)
@bp.doc(responses=[404, 422, 503])
def unsubscribe_message(message_id: uuid.UUID, body: UnsubscribeIn) -> UnsubscribeOut:
    """Leave the message's list: RFC 8058 one-click POST (a job) or the mailto: request."""
    method = unsubscribe.Method(body.method) if body.method else None
    done = unsubscribe.request_unsubscribe(runtime(), tenant_id(), message_id, method)
    return UnsubscribeOut(
        method=done.method.value, target=done.target, job_id=done.job_id, outbox_id=done.outbox_id
    )
