"""Full-text search over stored messages: one interface, the same answers on PostgreSQL and SQLite.

``search_messages`` takes a parsed query (``mail.query.parse``), compiles it to SQL
(``search_sql``) on the session's backend, always scoped to a tenant, and returns a page
of messages with a relevance score and a headline (``search_headline``).

Order ``"date"`` (newest first, then id) is the same on both backends, page by page.
Order ``"relevance"`` ranks by ``ts_rank_cd`` (PostgreSQL) or ``bm25`` (SQLite) of the
positive terms, then date, then id — among the newest :data:`RANK_WINDOW` matches; older
matches follow in date order. Ranking every match costs O(matches) (a second or more for
a common word in 100,000 messages); the window bounds it and favours recent mail, as a
mail client should. Both backends return the same messages; within the window each ranks
by its own measure.

What the application must do: fill ``Message.search_text`` with
``search_index.search_document(row, attachment_file_names)`` when it inserts a message, or
call :func:`refresh_search_text` after changing what the document is built from.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import ColumnElement, exc, func, select, text, update
from sqlalchemy.orm import Session, defer

from email_service.errors import SearchTimeoutError, ValidationError
from email_service.mail.query import And, Folder, Node, Not, Or, Term, terms
from email_service.store.models import Attachment, Message
from email_service.store.models import Folder as FolderRow
from email_service.store.search import cursor as search_cursor
from email_service.store.search.cursor import Cursor, Key, key_of, not_older, older
from email_service.store.search.headline import Headlines
from email_service.store.search.index import search_document
from email_service.store.search.sql import Compiler, TextEngine, engine_for, is_text

# A page larger than this is a dump, not a result list; it also bounds headline work.
MAX_LIMIT = 200
# Large columns of Message that neither a search result nor a rebuilt document reads.
LARGE = (Message.body_html, Message.headers)
# What a search result does not load besides: not shown in a result list (see
# ``messages.summary_view``), JSON that would be decoded for nothing. Reading one of them
# from a hit is an error (the session is gone), not a query per row.
DEFERRED = (*LARGE, Message.references, Message.cc_addrs, Message.bcc_addrs, Message.reply_to)
_DEFER = [defer(column, raiseload=True) for column in DEFERRED]
# A page whose query has no free-text word marks no body: its bodies stay unread too.
_DEFER_BODY = [*_DEFER, defer(Message.body_text, raiseload=True)]
_DEFER_LARGE = [defer(column, raiseload=True) for column in LARGE]
# Matches ranked by relevance (the newest ones); the rest follow by date. Ranking reads
# every ranked message's vector, so the window bounds a common word's cost (bench/search).
RANK_WINDOW = 500
DATE_ORDER = (Message.received_date.desc(), Message.id.desc())
# Documents recomputed per statement by refresh_search_text.
REFRESH_BATCH = 500
# What a search's plans assume a random heap read costs (sequential: 1): the pages of a
# mailbox being searched are in memory, as the usual setting for SSDs and caches says.
SEARCH_RANDOM_PAGE_COST = 1.1
# The settings of _custom_plans in one round trip, for this transaction only. A server already
# set lower (an operator's tuning) keeps its own cost and its own shorter statement_timeout
# (milliseconds; 0 is none); :limit NULL keeps the server's timeout.
SEARCH_SETTINGS = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
    " set_config('random_page_cost',"
    " least(current_setting('random_page_cost')::float8, :cost)::text, true),"
    " set_config('statement_timeout', (CASE WHEN CAST(:limit AS float8) IS NULL"
    " OR (server.ms > 0 AND server.ms < CAST(:limit AS float8)) THEN server.ms"
    " ELSE CAST(:limit AS float8) END)::bigint::text, true)"
    " FROM (SELECT extract(epoch FROM current_setting('statement_timeout')::interval) * 1000"
    " AS ms) AS server"
)
# SQLite calls the deadline check every this many virtual machine instructions.
SQLITE_PROGRESS_STEPS = 1_000
# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout (or by a cancel
# request); SQLite's error text when a progress handler stops a statement.
QUERY_CANCELED = "57014"
SQLITE_INTERRUPTED = "interrupted"

Order = Literal["relevance", "date"]
Row = tuple[Message, float]


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
    timeout: float | None = None,
) -> SearchPage:
    """Messages of the tenant (and account) matching the query tree, one page at a time.

    With ``timeout`` (seconds), a statement that runs longer is stopped and
    :class:`SearchTimeoutError` raised (see :func:`_limited`).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    position = search_cursor.decode(cursor, order) if cursor is not None else None
    found = [term for term in terms(node) if is_text(term)]
    with _limited(session, timeout) as dialect:
        engine = engine_for(dialect, session)
        compiler = Compiler(engine, _folder_ids(session, tenant_id, account_id, node))
        matching = [Message.tenant_id == tenant_id, compiler.condition(node)]
        if account_id is not None:
            matching.append(Message.account_id == account_id)
        rank_terms = _any_of(found) if found else None
        marker = Headlines(found)
        options = _DEFER if marker.body else _DEFER_BODY
        pages = _Pages(session, engine, matching, rank_terms, order, limit, options)
        if order == "relevance" and found and (position is None or position.phase == "rank"):
            rows, next_cursor = pages.ranked(position)
        else:
            rows, next_cursor = pages.dated(position.key if position else None)
    hits = [
        SearchHit(
            message,
            float(score),
            marker.headline(message.body_text if marker.body else None, message.subject),
        )
        for message, score in rows
    ]
    return SearchPage(hits, next_cursor.encode() if next_cursor else None)


class _Pages:
    """One page of a query in date order, or in the relevance window then date order."""

    def __init__(
        self,
        session: Session,
        engine: TextEngine,
        matching: list[ColumnElement[bool]],
        rank_terms: Node | None,
        order: str,
        limit: int,
        options: list[Any],
    ) -> None:
        self.session, self.matching, self.order, self.limit = session, matching, order, limit
        self.options = options
        query, _ = engine.with_rank(select(Message), rank_terms)
        self.query = query.where(*matching).options(*options)
        keys, _ = engine.with_rank(select(Message.id, Message.received_date), rank_terms)
        self.keys = keys.where(*matching)

    def dated(self, after: Key | None, limit: int | None = None) -> tuple[list[Row], Cursor | None]:
        """Newest first, after ``after``."""
        limit = self.limit if limit is None else limit
        query = self.query if after is None else self.query.where(older(after))
        found = self.session.execute(query.order_by(*DATE_ORDER).limit(limit + 1))
        rows = [(message, score) for message, score in found]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, Cursor(self.order, "date", key_of(rows[-1][0])) if more and rows else None

    def ranked(self, position: Cursor | None) -> tuple[list[Row], Cursor | None]:
        """The window by rank, then what is older than the window by date.

        One scan in date order reads the window's keys and ranks (the newest
        ``RANK_WINDOW`` matches); they are ordered here, and only the page is loaded.
        """
        window, edge = self._window(position.edge if position is not None else None)
        if position is not None:
            after = (position.rank, *position.key)
            window = [entry for entry in window if entry < after]
        chosen = window[: self.limit]
        rows = self._load(chosen)
        if len(window) > self.limit:
            score, at, ident = chosen[-1]
            return rows, Cursor(self.order, "rank", (at, ident), score, edge)
        if edge is None:
            return rows, None
        need = self.limit - len(rows)
        if need == 0:  # the window ended with the page: older matches start the next one
            beyond = self.keys.where(older(edge)).order_by(*DATE_ORDER).limit(1)
            more = self.session.execute(beyond).first() is not None
            return rows, Cursor(self.order, "date", edge) if more else None
        older_rows, next_cursor = self.dated(edge, need)
        return rows + older_rows, next_cursor

    def _window(
        self, edge: Key | None
    ) -> tuple[list[tuple[float, datetime, uuid.UUID]], Key | None]:
        """(rank, date, id) of the window, best first, and its oldest key (None: all)."""
        query = self.keys.order_by(*DATE_ORDER)
        if edge is not None:
            found = self.session.execute(query.where(not_older(edge))).all()
        else:
            found = self.session.execute(query.limit(RANK_WINDOW + 1)).all()
            if len(found) > RANK_WINDOW:
                found = found[:RANK_WINDOW]
                edge = (found[-1][1], found[-1][0])
        entries = [(float(score), at, ident) for ident, at, score in found]
        return sorted(entries, reverse=True), edge

    def _load(self, chosen: list[tuple[float, datetime, uuid.UUID]]) -> list[Row]:
        """The messages of these window entries, in their order."""
        tenant = self.matching[0]  # the window came from this tenant's rows; stay in them
        ids = [ident for _, _, ident in chosen]
        query = select(Message).where(tenant, Message.id.in_(ids)).options(*self.options)
        loaded = {message.id: message for message in self.session.scalars(query)}
        return [(loaded[ident], score) for score, _, ident in chosen]


def count_messages(
    session: Session,
    tenant_id: str,
    node: Node,
    *,
    account_id: uuid.UUID | None = None,
    timeout: float | None = None,
) -> int:
    """How many messages of the tenant (and account) match the query tree."""
    with _limited(session, timeout) as dialect:
        compiler = Compiler(
            engine_for(dialect, session), _folder_ids(session, tenant_id, account_id, node)
        )
        query = select(func.count()).where(Message.tenant_id == tenant_id, compiler.condition(node))
        if account_id is not None:
            query = query.where(Message.account_id == account_id)
        return int(session.scalar(query) or 0)


@contextmanager
def _limited(session: Session, timeout: float | None) -> Iterator[str]:
    """A search's statements, planned for their values and stopped after ``timeout`` s.

    Yields the dialect. On PostgreSQL the transaction's ``statement_timeout`` becomes
    ``timeout`` (a server's shorter one stays) along with the plan settings of
    :func:`_custom_plans`; on SQLite a progress handler stops any statement once
    ``timeout`` has passed since the search began. A stopped statement becomes
    :class:`SearchTimeoutError`; the transaction is then unusable, as after any error.
    ``None`` or ``0``: no limit of ours.
    """
    limit = timeout if timeout else None
    dialect = _custom_plans(session, limit)
    raw = session.connection().connection.dbapi_connection if dialect == "sqlite" else None
    if raw is not None and limit is not None:
        deadline = time.monotonic() + limit
        raw.set_progress_handler(lambda: time.monotonic() > deadline, SQLITE_PROGRESS_STEPS)
    try:
        yield dialect
    except exc.OperationalError as error:
        if limit is not None and _stopped(error):
            raise SearchTimeoutError(
                f"the search did not finish within {limit:g} s; narrow it with from:, in:,"
                " after: or a rarer word",
                timeout=limit,
            ) from None
        raise
    finally:
        if raw is not None and limit is not None:
            raw.set_progress_handler(None, 0)


def _stopped(error: exc.OperationalError) -> bool:
    """Whether the statement was stopped by a time limit rather than failing."""
    orig = error.orig
    return getattr(orig, "sqlstate", None) == QUERY_CANCELED or str(orig) == SQLITE_INTERRUPTED


def _custom_plans(session: Session, limit: float | None = None) -> str:
    """Plan this transaction's statements for their actual values; returns the dialect.

    Search statements are the same text for every query (the tsquery is a parameter), so
    after five runs psycopg prepares them and PostgreSQL may switch to a generic plan,
    made without knowing how common the words are: it guesses a few matches and ranks
    every match of a common word, where the plan for the value reads only the newest rows.

    The plans also price a random heap read as :data:`SEARCH_RANDOM_PAGE_COST` instead
    of PostgreSQL's default 4 (a spinning disk). With 4, a relevance window of a word in
    a few percent of the mail walks the date index through many thousands of rows rather
    than fetch its matches from the text index and sort them (docs/search.md). The settings are
    local to the transaction (``set_config(..., true)``), and one statement sets them
    all, with ``statement_timeout`` from ``limit`` (seconds) when there is one.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        ms = None if limit is None else max(1, math.ceil(limit * 1000))  # 0 would be none
        session.execute(SEARCH_SETTINGS, {"cost": SEARCH_RANDOM_PAGE_COST, "limit": ms})
    return dialect


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
            .options(*_DEFER_LARGE)
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
