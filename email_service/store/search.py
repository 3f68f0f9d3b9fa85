"""Full-text search over stored messages: one interface, the same answers on PostgreSQL and SQLite.

``search_messages`` takes a parsed query (``mail.query.parse``), compiles it to SQL
(``search_sql``) on the session's backend, always scoped to a tenant, and returns a page
of messages with a relevance score and a headline (``search_headline``).

Order ``"date"`` (newest first, then id) is the same on both backends, page by page.
Order ``"relevance"`` ranks by ``ts_rank_cd`` (PostgreSQL) or ``bm25`` (SQLite) of the
positive terms, then date, then id: the same messages, ranked by each engine's measure.

What the application must do: fill ``Message.search_text`` with
``search_index.search_document(row, attachment_file_names)`` when it inserts a message, or
call :func:`refresh_search_text` after changing what the document is built from.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import ColumnElement, UnaryExpression, and_, func, or_, select, update
from sqlalchemy.orm import Session, defer

from email_service.errors import ValidationError
from email_service.mail.query import And, Folder, Node, Not, Or, Term, terms
from email_service.store.models import Attachment, Message
from email_service.store.models import Folder as FolderRow
from email_service.store.search_headline import Headlines
from email_service.store.search_index import search_document
from email_service.store.search_sql import Compiler, engine_for, is_text

# A page larger than this is a dump, not a result list; it also bounds headline work.
MAX_LIMIT = 200
# Columns of Message a search result does not load (large, and not shown in a list).
DEFERRED = (Message.body_html, Message.headers)
# Documents recomputed per statement by refresh_search_text.
REFRESH_BATCH = 500

Order = Literal["relevance", "date"]


class SearchHit(NamedTuple):
    """One result: the message, its relevance (higher is better) and a marked snippet."""

    message: Message
    rank: float
    headline: str | None


@dataclass(frozen=True)
class SearchPage:
    """One page of results and the cursor of the next page, if any."""

    items: list[SearchHit]
    next_cursor: str | None


def search_messages(
    session: Session,
    tenant_id: str,
    node: Node,
    *,
    account_id: uuid.UUID | None = None,
    limit: int,
    cursor: str | None = None,
    order: Order = "relevance",
) -> SearchPage:
    """Messages of the tenant (and account) matching the query tree, one page at a time."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    engine = engine_for(session.get_bind().dialect.name)
    compiler = Compiler(engine, _folder_ids(session, tenant_id, account_id, node))
    found = [term for term in terms(node) if is_text(term)]
    query, rank = engine.with_rank(select(Message), engine.query(_any_of(found)) if found else None)
    query = query.where(Message.tenant_id == tenant_id, compiler.condition(node))
    if account_id is not None:
        query = query.where(Message.account_id == account_id)
    ranked = order == "relevance" and bool(found)  # without terms every rank is 0
    if cursor is not None:
        query = query.where(_after(cursor, order, rank if ranked else None))
    keys: list[UnaryExpression[Any]] = [Message.received_date.desc(), Message.id.desc()]
    if ranked:
        keys.insert(0, rank.desc())
    options = [defer(column) for column in DEFERRED]
    rows = session.execute(query.order_by(*keys).limit(limit + 1).options(*options)).all()
    marker = Headlines(found)
    hits = [
        SearchHit(message, float(score), marker.headline(message.body_text, message.subject))
        for message, score in rows[:limit]
    ]
    next_cursor = _cursor(hits[-1], order) if len(rows) > limit else None
    return SearchPage(hits, next_cursor)


def count_messages(
    session: Session, tenant_id: str, node: Node, *, account_id: uuid.UUID | None = None
) -> int:
    """How many messages of the tenant (and account) match the query tree."""
    engine = engine_for(session.get_bind().dialect.name)
    compiler = Compiler(engine, _folder_ids(session, tenant_id, account_id, node))
    query = select(func.count()).where(Message.tenant_id == tenant_id, compiler.condition(node))
    if account_id is not None:
        query = query.where(Message.account_id == account_id)
    return int(session.scalar(query) or 0)


def _any_of(found: Sequence[Term]) -> Node:
    """The positive terms as one disjunction, for ranking (nothing to rank: no terms)."""
    return found[0] if len(found) == 1 else Or(tuple(found))


def _folder_ids(
    session: Session, tenant_id: str, account_id: uuid.UUID | None, node: Node
) -> dict[Folder, list[uuid.UUID]]:
    """Folder ids per ``in:`` of the tree: name equal ignoring case (casefold), or role."""
    wanted = _folders_in(node)
    if not wanted:
        return {}
    query = select(FolderRow.id, FolderRow.name, FolderRow.role).where(
        FolderRow.tenant_id == tenant_id
    )
    if account_id is not None:
        query = query.where(FolderRow.account_id == account_id)
    rows = session.execute(query).all()
    return {
        folder: [
            row.id
            for row in rows
            if row.name.casefold() == folder.name.casefold()
            or (folder.role is not None and row.role == folder.role)
        ]
        for folder in wanted
    }


def _folders_in(node: Node) -> set[Folder]:
    if isinstance(node, Folder):
        return {node}
    if isinstance(node, Not):
        return _folders_in(node.node)
    if isinstance(node, And | Or):
        return set().union(*(_folders_in(child) for child in node.children))
    return set()


def _cursor(hit: SearchHit, order: Order) -> str:
    """An opaque cursor after this hit."""
    key: list[Any] = [hit.message.received_date.isoformat(), hit.message.id.hex]
    if order == "relevance":
        key.insert(0, hit.rank)
    raw = json.dumps([order, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str, order: Order, rank: ColumnElement[float] | None) -> ColumnElement[bool]:
    """The keyset condition of a cursor: rows after it in the page order."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, *key = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if kind != order or len(key) != (3 if order == "relevance" else 2):
            raise ValueError("cursor of another order")
        at, after_id = datetime.fromisoformat(key[-2]), uuid.UUID(key[-1])
        if at.tzinfo is None:
            raise ValueError("naive timestamp")
        score = float(key[0]) if order == "relevance" else 0.0
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("invalid cursor", field="cursor") from None
    # "<= at" first: a range the date indexes answer; the OR only settles ties
    older = and_(
        Message.received_date <= at, or_(Message.received_date < at, Message.id < after_id)
    )
    if rank is None:
        return older
    return or_(rank < score, and_(rank == score, older))


def refresh_search_text(session: Session, tenant_id: str, message_ids: Sequence[uuid.UUID]) -> int:
    """Rebuild the token documents of these messages from their columns and attachments."""
    done = 0
    for start in range(0, len(message_ids), REFRESH_BATCH):
        batch = list(message_ids[start : start + REFRESH_BATCH])
        names: dict[uuid.UUID, list[str | None]] = {}
        for message_id, filename in session.execute(
            select(Attachment.message_id, Attachment.filename)
            .where(Attachment.tenant_id == tenant_id, Attachment.message_id.in_(batch))
            .order_by(Attachment.part_index)
        ):
            names.setdefault(message_id, []).append(filename)
        messages = session.scalars(
            select(Message)
            .where(Message.tenant_id == tenant_id, Message.id.in_(batch))
            .options(*(defer(column) for column in DEFERRED))
        ).all()
        values = [
            {"id": m.id, "search_text": message_document(m, names.get(m.id, ()))} for m in messages
        ]
        if values:
            session.execute(update(Message), values)
        done += len(values)
    return done


def message_document(message: Message, filenames: Sequence[str | None]) -> str:
    """``search_document`` of a stored message."""
    fields = ("subject", "from_name", "from_email", "to_addrs", "cc_addrs", "bcc_addrs")
    row = {name: getattr(message, name) for name in (*fields, "body_text")}
    return search_document(row, filenames)
