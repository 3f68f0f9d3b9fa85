"""Search use case: Gmail-style query text to a page of messages with snippets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from email_service.mail.query import parse
from email_service.store.search.backend import Order, SearchPage, search_messages


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
