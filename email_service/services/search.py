"""Search use case: Gmail-style query text to a page of messages with snippets."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import Connection, exists, select
from sqlalchemy.orm import Session

from email_service.mail.query import parse
from email_service.store.db import Database
from email_service.store.models import SyncState, utcnow
from email_service.store.search.backend import Order, SearchPage, search_messages
from email_service.store.search.pairs import pair_pending
from email_service.store.states import SyncRunState

# Seconds one tick of the pairing job may run before it leaves the rest to the next tick,
# so that a worker it shares with syncs is never held for long.
PAIR_TICK_BUDGET_S = 20.0


def search(
    session: Session | Connection,
    tenant_id: str,
    query: str,
    *,
    account_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
    order: Order,
    now: datetime | None = None,
    timeout: float | None = None,
) -> SearchPage:
    """Parse ``query`` (QuerySyntaxError with a position) and run it for the tenant.

    ``timeout``: seconds a statement may run (SearchTimeoutError after), None for no limit.
    """
    node = parse(query, now or datetime.now(UTC))
    return search_messages(
        session,
        tenant_id,
        node,
        account_id=account_id,
        limit=limit,
        cursor=cursor,
        order=order,
        timeout=timeout,
    )


def pair_stored_messages(db: Database, budget_s: float = PAIR_TICK_BUDGET_S) -> int:
    """Write the phrase pairs of messages stored since the last run (every tenant's), in
    batches, for about ``budget_s`` seconds; returns how many messages were paired.

    It gives way to syncs: while any account's sync runs it stops (the next tick comes
    back), so a first sync never shares the machine with the pairing of its messages.
    """
    if db.dialect != "postgresql":
        return 0  # FTS5 keeps positions in its index
    done, until = 0, time.monotonic() + budget_s
    while time.monotonic() < until:
        with db.operator_session("search: pair the words of stored messages") as session:
            paired = 0 if _sync_running(session) else pair_pending(session)
        if not paired:
            break
        done += paired
    return done


def _sync_running(session: Session) -> bool:
    running = (SyncState.state == SyncRunState.RUNNING) & (SyncState.lock_expires_at > utcnow())
    return bool(session.scalar(select(exists().where(running))))
