"""GET /api/messages/{id}/headers: every header field in order, and the parsed ones."""

from __future__ import annotations

import uuid

from apiflask import APIBlueprint
from pydantic import BaseModel

from email_service.api.http.context import runtime, tenant_id
from email_service.services import gateways, headers

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
