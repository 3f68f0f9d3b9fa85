"""/api/outbox: every send, its state and the SMTP server's last answer; cancel."""

from __future__ import annotations

import uuid

from apiflask import APIBlueprint

from email_service.api.compose_schemas import OutboxOut, OutboxPage, OutboxQuery
from email_service.api.context import runtime, tenant_id
from email_service.services.outgoing import outbox
from email_service.services.outgoing.drafts import OutboxRecord

bp = APIBlueprint("outbox", __name__, url_prefix="/api/outbox", tag="Compose")


@bp.get("")
@bp.input(OutboxQuery, location="query", arg_name="query")
@bp.output(OutboxPage)
def list_outbox(query: OutboxQuery) -> OutboxPage:
    """This tenant's sends, newest first; ``state`` filters."""
    with runtime().db.session() as session:
        page = outbox.list_outbox(session, tenant_id(), query.limit, query.cursor, query.state)
    return OutboxPage(
        items=[OutboxOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )


@bp.get("/<uuid:outbox_id>")
@bp.output(OutboxOut)
@bp.doc(responses=[404])
def get_outbox(outbox_id: uuid.UUID) -> OutboxRecord:
    """One send: state, attempts, next attempt, the server's last answer, the Sent copy."""
    with runtime().db.session() as session:
        return outbox.get_outbox(session, tenant_id(), outbox_id)


@bp.post("/<uuid:outbox_id>/cancel")
@bp.output(OutboxOut)
@bp.doc(responses=[404, 409])
def cancel_send(outbox_id: uuid.UUID) -> OutboxRecord:
    """Cancel a send not yet under way (or awaiting reconciliation); the draft is editable."""
    return outbox.cancel(runtime(), tenant_id(), outbox_id)
