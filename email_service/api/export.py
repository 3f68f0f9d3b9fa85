"""GET /api/accounts/{id}/export: the account's mail as one mbox, streamed."""

from __future__ import annotations

import uuid

from apiflask import APIBlueprint
from flask import Response

from email_service.api.http.context import runtime, tenant_id
from email_service.services.lifecycle import export

bp = APIBlueprint("export", __name__, url_prefix="/api/accounts", tag="Accounts")

MBOX_RESPONSES = {
    200: {
        "description": "every message of the account, original bytes, mboxrd-quoted",
        "content": {"application/mbox": {"schema": {"type": "string", "format": "binary"}}},
    },
    404: {"description": "Not found"},
}


@bp.get("/<uuid:account_id>/export")
@bp.doc(responses=MBOX_RESPONSES)  # type: ignore[arg-type]
def export_account(account_id: uuid.UUID) -> Response:
    """Download the account's mail as an mbox (mboxrd), streamed as it is read."""
    rt, tenant = runtime(), tenant_id()
    total = export.count(rt, tenant, account_id)  # 404 before the first byte is sent
    return Response(
        export.mbox(rt, tenant, account_id),
        mimetype="application/mbox",
        headers={
            "Content-Disposition": f'attachment; filename="{account_id}.mbox"',
            "X-Message-Count": str(total),
            "X-Content-Type-Options": "nosniff",
        },
    )
