"""Reconciliation of sends whose fate is unknown, and beat's periodic look at the outbox.

A message is looked for by its Message-ID (``sent_copy.find_delivered``) a few times; if
it never turns up, a person decides (cancel, then send the draft again on purpose).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import or_, select, update

from email_service.services.outgoing import outbox, sent_copy
from email_service.services.outgoing.send_steps import (
    SendOutcome,
    after_sent,
    copy_to_sent_for_row,
    drop_draft_copy,
    settle,
)
from email_service.services.runtime import Runtime
from email_service.store.db import changed
from email_service.store.models import Outbox, utcnow
from email_service.store.states import CLAIMABLE_OUTBOX_STATES, OutboxState, SentCopyState

# How often a message whose fate is unknown is looked for before a person must decide.
RECONCILE_MAX_CHECKS = 3
# A Sent copy still pending this long after sending lost its worker: beat tries again.
SENT_COPY_GRACE = timedelta(minutes=1)


def reconcile(runtime: Runtime, row: Outbox) -> SendOutcome:
    """Look for a message whose fate is unknown; a person decides after a few misses."""
    if row.reconcile_checks >= RECONCILE_MAX_CHECKS:
        return SendOutcome(row.state, detail="waiting for a person: cancel, or send again")
    found = sent_copy.find_delivered(runtime, row)
    if found is None:
        checks = row.reconcile_checks + 1
        error = (
            f"not found by Message-ID {row.message_id} ({checks} checks); it may still "
            "arrive. Cancel and send the draft again only if the recipients lack it"
        )
        settle(runtime, row, None, reconcile_checks=checks, last_error=error)
        again = checks < RECONCILE_MAX_CHECKS
        retry = runtime.settings.send_retry_base_seconds * 2**checks if again else None
        return SendOutcome(row.state, retry_in=retry, detail=error)
    copy = "server_copy" if found == "sent_folder" else "pending"
    note = f"delivered: found in the {found.replace('_', ' ')} after an unanswered end of data"
    with runtime.db.session() as session:  # sent, the draft gone: one transaction
        done = changed(
            session,
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.state == OutboxState.NEEDS_RECONCILIATION)
            .values(state=OutboxState.SENT, sent_at=utcnow(), sent_copy=copy, last_error=note),
        )
        copy_may_exist = after_sent(session, row) if done else False
    if done:
        drop_draft_copy(runtime, row, copy_may_exist)
        copy_to_sent_for_row(runtime, row.id)
    return SendOutcome(OutboxState.SENT, detail=note)


def due_work(runtime: Runtime, limit: int = 1000) -> list[tuple[str, uuid.UUID]]:
    """(tenant, draft) of every row beat should move on: due, stale, to reconcile, to copy."""
    now = utcnow()
    grace = timedelta(seconds=runtime.settings.send_retry_base_seconds)
    due = (Outbox.state.in_(CLAIMABLE_OUTBOX_STATES)) & (Outbox.next_attempt_at <= now)
    stale = (Outbox.state == OutboxState.SENDING) & (Outbox.lease_expires_at < now)
    unsure = (
        (Outbox.state == OutboxState.NEEDS_RECONCILIATION)
        & (Outbox.reconcile_checks < RECONCILE_MAX_CHECKS)
        & (Outbox.updated_at < now - grace)
    )
    copy = (
        (Outbox.state == OutboxState.SENT)
        & (Outbox.sent_copy == SentCopyState.PENDING)
        & (Outbox.sent_at < now - SENT_COPY_GRACE)
    )
    with runtime.db.operator_session("beat: outbox rows with work due") as session:
        rows = session.execute(
            select(Outbox.tenant_id, Outbox.draft_id)
            .where(or_(due, stale, unsure, copy))
            .limit(limit)
        ).all()
    return [(tenant_id, draft_id) for tenant_id, draft_id in rows]


def send_due(runtime: Runtime) -> int:
    """Beat's periodic job: queue ``send_email`` for every row that has something to do."""
    if not runtime.settings.enable_smtp_send:
        return 0
    work = due_work(runtime)
    for tenant_id, draft_id in work:
        outbox.enqueue(runtime, tenant_id, draft_id)
    return len(work)
