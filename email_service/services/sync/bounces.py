"""Bounces among synced messages, linked to the sends they are about.

A message that ``mail/mime/dsn.py`` reads as a bounce is linked, in the transaction that
stores it, to the outbox row of the same tenant named by its envelope id (ours is the
row's id, sent as the RFC 3461 ENVID), or else by the returned original's Message-ID.
A bounce that names no row of this tenant changes nothing.

The row keeps one entry per recipient and action (``failed`` or ``delayed``): recipient
(as we addressed it, when the report says so), action, status, diagnostic, reported_at.
When every envelope recipient has failed, a ``sent`` row becomes ``bounced``; a partial
bounce keeps ``sent`` and lists the failed recipients. A new failure is announced as
``send.bounced``, a delay as ``send.updated``. The same report synced again (a copy in
another folder, a resync) adds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy.orm import Session

from email_service.mail.mime.dsn import Bounce, RecipientStatus
from email_service.services.events import record as announce
from email_service.store.models import Outbox, utcnow
from email_service.store.states import OutboxState
from email_service.store.tenancy import owned

# Actions kept on the row: what went wrong or is late (RFC 3464 §2.3.3). We ask for no
# success notices (NOTIFY=FAILURE,DELAY), and a "delivered" in a mixed report is the 250.
RECORDED_ACTIONS = ("failed", "delayed")
Entry = dict[str, str | None]


def link_bounces(session: Session, tenant_id: str, bounces: Iterable[Bounce]) -> int:
    """Record each bounce on the tenant's send it is about; the number of sends changed."""
    changed = 0
    for bounce in bounces:
        row = find_send(session, tenant_id, bounce)
        if row is not None and record_bounce(session, row, bounce):
            changed += 1
    return changed


def find_send(session: Session, tenant_id: str, bounce: Bounce) -> Outbox | None:
    """The tenant's send named by the bounce's envelope id, else by its Message-ID."""
    query = owned(Outbox, tenant_id).with_for_update()
    envid = _uuid(bounce.envelope_id)
    if envid is not None:
        row = session.scalar(query.where(Outbox.id == envid))
        if row is not None:
            return row
    if not bounce.original_message_id:
        return None
    return session.scalar(
        query.where(Outbox.message_id == bounce.original_message_id)
        .order_by(Outbox.created_at.desc())
        .limit(1)
    )


def record_bounce(session: Session, row: Outbox, bounce: Bounce) -> bool:
    """Add what the bounce says to the row; False when it said nothing new."""
    entries = {(e["recipient"], e["action"]): e for e in row.bounces}
    new = [e for e in _entries(row, bounce) if _is_new(entries, e)]
    if not new:
        return False
    for entry in new:
        entries[(entry["recipient"], entry["action"])] = entry
    row.bounces = list(entries.values())
    if row.state == OutboxState.SENT and _all_failed(row):
        row.state = OutboxState.BOUNCED
    failed = any(e["action"] == "failed" for e in new)
    announce.send_bounced(session, row.tenant_id, row.account_id, row.id, failed)
    return True


def _entries(row: Outbox, bounce: Bounce) -> list[Entry]:
    now = utcnow().isoformat()
    return [
        {
            "recipient": _addressed(row, status),
            "action": status.action,
            "status": status.status,
            "diagnostic": status.diagnostic,
            "reported_at": now,
        }
        for status in bounce.recipients
        if status.action in RECORDED_ACTIONS
    ]


def _addressed(row: Outbox, status: RecipientStatus) -> str:
    """The recipient as we named it in RCPT TO, if the report names one of ours."""
    ours = {address.lower(): address for address in row.recipients}
    for candidate in (status.original_recipient, status.recipient):
        if candidate and candidate.lower() in ours:
            return ours[candidate.lower()]
    return status.recipient


def _is_new(entries: dict[tuple[str | None, str | None], Entry], entry: Entry) -> bool:
    known = entries.get((entry["recipient"], entry["action"]))
    return known is None or (known["status"], known["diagnostic"]) != (
        entry["status"],
        entry["diagnostic"],
    )


def _all_failed(row: Outbox) -> bool:
    failed = {str(e["recipient"]).lower() for e in row.bounces if e["action"] == "failed"}
    return bool(row.recipients) and all(r.lower() in failed for r in row.recipients)


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
