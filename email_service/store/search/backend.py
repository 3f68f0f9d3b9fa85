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

import functools
import math
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import ColumnElement, Connection, case, exc, func, select, text, update
from sqlalchemy.orm import Session, defer

from email_service.errors import SearchTimeoutError, ValidationError
from email_service.mail.query import And, Folder, Node, Not, Or, Term, terms
from email_service.store.db import SEARCH_POOL
from email_service.store.models import SUMMARY_COLUMNS, Attachment, Message
from email_service.store.models import Folder as FolderRow
from email_service.store.search import cursor as search_cursor
from email_service.store.search import statements
from email_service.store.search.cursor import Cursor, Key, key_of, not_older, older
from email_service.store.search.headline import SCAN_CHARS, Headlines
from email_service.store.search.index import search_document
from email_service.store.search.sql import AnySelect, Compiler, TextEngine, engine_for, is_text

# A page larger than this is a dump, not a result list; it also bounds headline work.
MAX_LIMIT = 200
# Large columns of Message that a rebuilt document does not read.
LARGE = (Message.body_html, Message.headers)
_DEFER_LARGE = [defer(column, raiseload=True) for column in LARGE]
# What a headline is cut from: the start of the body it scans (headline.SCAN_CHARS), read
# only when the query has a free-text word (nothing else in a body is marked).
BODY_HEAD = func.substr(Message.body_text, 1, SCAN_CHARS).label("body_head")
# The same on PostgreSQL, where a body of no more bytes than SCAN_CHARS (no more characters
# either) is read whole: octet_length reads the stored size, where substr decompressed
# and counted the characters of every body (1.8 ms of a page of 51 4.5 KB bodies, of 4.4).
# SQLite has octet_length only from 3.43 and keeps substr.
PG_BODY_HEAD = case(
    (func.octet_length(Message.body_text) <= SCAN_CHARS, Message.body_text),
    else_=func.substr(Message.body_text, 1, SCAN_CHARS),
).label("body_head")
# A hit's columns: the message list's (a hit is shown as a list shows a message), then the
# head of the body for its headline when there is one to mark.
HIT_COLUMNS = SUMMARY_COLUMNS
MARKED_HIT_COLUMNS = (*SUMMARY_COLUMNS, BODY_HEAD)
PG_MARKED_HIT_COLUMNS = (*SUMMARY_COLUMNS, PG_BODY_HEAD)
# The SELECT of each set of hit columns, built once: a search adds its rank and conditions
# to it (a Select is immutable) rather than coerce the eighteen columns again each time.
_HIT_SELECTS = tuple(
    (columns, select(*columns))
    for columns in (HIT_COLUMNS, MARKED_HIT_COLUMNS, PG_MARKED_HIT_COLUMNS)
)
# The relevance window's keys, likewise.
_KEY_SELECT = select(Message.id, Message.received_date)
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
# SEARCH_CONNECTION_SETTINGS: the same for the rest of the connection's life (the search
# pool's, see _connection_settings), measured against the values the connection started
# with (``reset_val``: the server's, database's or role's), so it can be set again.
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
SEARCH_CONNECTION_SETTINGS = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', false),"
    " set_config('random_page_cost', least(server.cost, :cost)::text, false),"
    " set_config('statement_timeout', (CASE WHEN CAST(:limit AS float8) IS NULL"
    " OR (server.ms > 0 AND server.ms < CAST(:limit AS float8)) THEN server.ms"
    " ELSE CAST(:limit AS float8) END)::bigint::text, false)"
    " FROM (SELECT max(reset_val::float8) FILTER (WHERE name = 'random_page_cost') AS cost,"
    " max(reset_val::float8) FILTER (WHERE name = 'statement_timeout') AS ms"
    " FROM pg_settings WHERE name IN ('random_page_cost', 'statement_timeout')) AS server"
)
# Where a search pool connection remembers the limit (ms, None: none of ours) it was set to.
_CONNECTION_LIMIT = "email_service.search_limit"
# SQLite calls the deadline check every this many virtual machine instructions.
SQLITE_PROGRESS_STEPS = 1_000
# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout (or by a cancel
# request); SQLite's error text when a progress handler stops a statement.
QUERY_CANCELED = "57014"
SQLITE_INTERRUPTED = "interrupted"

Order = Literal["relevance", "date"]
Scored = tuple[Any, float]


class SearchHit(NamedTuple):
    """One result: the message's :data:`SUMMARY_COLUMNS` (what ``summary_view`` reads) as a
    named tuple, its relevance (higher is better) and a marked snippet."""

    message: Any
    rank: float
    headline: str | None


@dataclass(frozen=True)
class SearchPage:
    """One page of results and the cursor of the next page, if any."""

    items: list[SearchHit]
    next_cursor: str | None


def search_messages(
    session: Session | Connection,
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

    ``session``: a Session (its transaction), or a Connection such as
    ``Database.searching()`` gives. With ``timeout`` (seconds), a statement that runs
    longer is stopped and :class:`SearchTimeoutError` raised (see :func:`_limited`).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    position = search_cursor.decode(cursor, order) if cursor is not None else None
    found = [term for term in terms(node) if is_text(term)]
    conn = _connection(session)
    with _limited(conn, timeout) as dialect:
        engine = engine_for(dialect, conn)
        compiler = Compiler(engine, _folder_ids(conn, tenant_id, account_id, node))
        matching = [Message.tenant_id == tenant_id, compiler.condition(node)]
        if account_id is not None:
            matching.append(Message.account_id == account_id)
        rank_terms = _any_of(found) if found else None
        marker = Headlines(found)
        marked = PG_MARKED_HIT_COLUMNS if dialect == "postgresql" else MARKED_HIT_COLUMNS
        columns = marked if marker.body else HIT_COLUMNS
        pages = _Pages(conn, engine, matching, rank_terms, order, limit, columns)
        if order == "relevance" and found and (position is None or position.phase == "rank"):
            rows, next_cursor = pages.ranked(position)
        else:
            rows, next_cursor = pages.dated(position.key if position else None)
    hits = [
        SearchHit(
            row,
            float(score),
            marker.headline(row.body_head if marker.body else None, row.subject),
        )
        for row, score in rows
    ]
    return SearchPage(hits, next_cursor.encode() if next_cursor else None)


def _connection(session: Session | Connection) -> Connection:
    """The connection a search runs on: a Session's, in its transaction."""
    return session if isinstance(session, Connection) else session.connection()


class _Pages:
    """One page of a query in date order, or in the relevance window then date order."""

    def __init__(
        self,
        conn: Connection,
        engine: TextEngine,
        matching: list[ColumnElement[bool]],
        rank_terms: Node | None,
        order: str,
        limit: int,
        columns: tuple[Any, ...],
    ) -> None:
        self.conn, self.matching, self.order, self.limit = conn, matching, order, limit
        self.engine, self.rank_terms, self.columns = engine, rank_terms, columns
        query, _ = engine.with_rank(_hit_select(columns), rank_terms)
        self.query = query.where(*matching)

    @functools.cached_property
    def keys(self) -> AnySelect:
        """The matches' ids, dates and ranks (the relevance window; built only for it)."""
        keys, _ = self.engine.with_rank(_KEY_SELECT, self.rank_terms)
        return keys.where(*self.matching)

    def dated(
        self, after: Key | None, limit: int | None = None
    ) -> tuple[list[Scored], Cursor | None]:
        """Newest first, after ``after``."""
        limit = self.limit if limit is None else limit
        query = self.query if after is None else self.query.where(older(after))
        found = statements.rows(self.conn, query.order_by(*DATE_ORDER).limit(limit + 1))
        rows = [(row, row.rank) for row in found]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, Cursor(self.order, "date", key_of(rows[-1][0])) if more and rows else None

    def ranked(self, position: Cursor | None) -> tuple[list[Scored], Cursor | None]:
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
            more = bool(statements.rows(self.conn, beyond))
            return rows, Cursor(self.order, "date", edge) if more else None
        older_rows, next_cursor = self.dated(edge, need)
        return rows + older_rows, next_cursor

    def _window(
        self, edge: Key | None
    ) -> tuple[list[tuple[float, datetime, uuid.UUID]], Key | None]:
        """(rank, date, id) of the window, best first, and its oldest key (None: all)."""
        query = self.keys.order_by(*DATE_ORDER)
        if edge is not None:
            found = statements.rows(self.conn, query.where(not_older(edge)))
        else:
            found = statements.rows(self.conn, query.limit(RANK_WINDOW + 1))
            if len(found) > RANK_WINDOW:
                found = found[:RANK_WINDOW]
                edge = (found[-1][1], found[-1][0])
        entries = [(float(score), at, ident) for ident, at, score in found]
        return sorted(entries, reverse=True), edge

    def _load(self, chosen: list[tuple[float, datetime, uuid.UUID]]) -> list[Scored]:
        """The messages of these window entries, in their order (one deleted since the
        window was read, on a connection without a transaction, is left out)."""
        tenant = self.matching[0]  # the window came from this tenant's rows; stay in them
        ids = [ident for _, _, ident in chosen]
        query = _hit_select(self.columns).where(tenant, self.engine.one_of(Message.id, ids))
        loaded = {row.id: row for row in statements.rows(self.conn, query)}
        return [(loaded[ident], score) for score, _, ident in chosen if ident in loaded]


def _hit_select(columns: tuple[Any, ...]) -> AnySelect:
    """``select(*columns)``: the one built at import for a known set of hit columns."""
    for known, query in _HIT_SELECTS:
        if columns is known:
            return query
    return select(*columns)


def count_messages(
    session: Session | Connection,
    tenant_id: str,
    node: Node,
    *,
    account_id: uuid.UUID | None = None,
    timeout: float | None = None,
) -> int:
    """How many messages of the tenant (and account) match the query tree."""
    conn = _connection(session)
    with _limited(conn, timeout) as dialect:
        compiler = Compiler(
            engine_for(dialect, conn), _folder_ids(conn, tenant_id, account_id, node)
        )
        query = select(func.count()).where(Message.tenant_id == tenant_id, compiler.condition(node))
        if account_id is not None:
            query = query.where(Message.account_id == account_id)
        return int(conn.scalar(query) or 0)


@contextmanager
def _limited(conn: Connection, timeout: float | None) -> Iterator[str]:
    """A search's statements, planned for their values and stopped after ``timeout`` s.

    Yields the dialect. On PostgreSQL the transaction's ``statement_timeout`` becomes
    ``timeout`` (a server's shorter one stays) along with the plan settings of
    :func:`_custom_plans`; on SQLite a progress handler stops any statement once
    ``timeout`` has passed since the search began. A stopped statement becomes
    :class:`SearchTimeoutError`; the transaction is then unusable, as after any error.
    ``None`` or ``0``: no limit of ours.
    """
    limit = timeout if timeout else None
    dialect = _custom_plans(conn, limit)
    raw = conn.connection.dbapi_connection if dialect == "sqlite" else None
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


def _custom_plans(session: Session | Connection, limit: float | None = None) -> str:
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

    A connection of the search pool (``Database.searching``) keeps them instead: see
    :func:`_connection_settings`.
    """
    conn = _connection(session)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        ms = None if limit is None else max(1, math.ceil(limit * 1000))  # 0 would be none
        if conn.get_execution_options().get(SEARCH_POOL):
            _connection_settings(conn, ms)
        else:
            conn.execute(SEARCH_SETTINGS, {"cost": SEARCH_RANDOM_PAGE_COST, "limit": ms})
    return dialect


def _connection_settings(conn: Connection, ms: int | None) -> None:
    """The settings of :func:`_custom_plans` for the connection's life, set when it is new
    or was set for another limit: no round trip for them per search.

    Only connections of the search pool are set so; they run nothing but searches, each
    statement on its own (autocommit), so the limit holds for every statement as
    ``SET LOCAL`` would. A server's lower cost or shorter timeout stays, as there.
    """
    info = conn.connection.info
    if _CONNECTION_LIMIT in info and info[_CONNECTION_LIMIT] == ms:
        return
    info.pop(_CONNECTION_LIMIT, None)  # unknown until the settings are in
    conn.execute(SEARCH_CONNECTION_SETTINGS, {"cost": SEARCH_RANDOM_PAGE_COST, "limit": ms})
    info[_CONNECTION_LIMIT] = ms


def _any_of(found: Sequence[Term]) -> Node:
    """The positive terms as one disjunction, for ranking (nothing to rank: no terms)."""
    return found[0] if len(found) == 1 else Or(tuple(found))


def _folder_ids(
    conn: Connection, tenant_id: str, account_id: uuid.UUID | None, node: Node
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
    rows = statements.rows(conn, query)
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
