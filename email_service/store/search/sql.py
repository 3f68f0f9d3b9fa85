"""Compile the search tree (``mail.query_ast``) to one SQL condition, per backend.

Text (``Term`` and negations, conjunctions and disjunctions of Terms) becomes a
PostgreSQL ``tsquery`` matched against the ``tsvector`` column, or an FTS5 MATCH
expression; every other node is a plain SQL predicate. A group of text children is sent
to the engine as one query, so the index answers it in one pass. Queries are built from
document tokens (``search_index.query_tokens``: letters, digits and ``_``), each one
quoted, so no user text ever reaches tsquery or FTS5 syntax.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    table,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, TSQUERY, TSVECTOR
from sqlalchemy.orm import Session

from email_service.mail.query import (
    And,
    DateCmp,
    Flag,
    Folder,
    HasAttachment,
    Label,
    MessageId,
    Node,
    Not,
    Or,
    SizeCmp,
    Term,
)
from email_service.store.models import Message
from email_service.store.search import pairs
from email_service.store.search.index import query_tokens

# A SELECT of any columns (SQLAlchemy 2.1 types each column of a Select).
AnySelect = Select[*tuple[Any, ...]]
# The FTS5 table of migration 0003 (SQLite); its hidden column has the table's name.
FTS = table("email_search", column("rowid"), column("email_search"))
# PostgreSQL's generated vector of the field-prefixed tokens (migration 0003).
SEARCH_HEAD: ColumnElement[Any] = literal_column("email_message.search_head", TSVECTOR)
# email_message's rowid: the FTS5 external-content key.
MESSAGE_ROWID: ColumnElement[int] = literal_column("email_message.rowid")
# The IMAP system flags (RFC 9051 §2.3.2) and their boolean mirror columns.
FLAG_COLUMNS = {
    "seen": Message.seen,
    "flagged": Message.flagged,
    "answered": Message.answered,
    "draft": Message.draft,
}
# ASCII-only lower-casing: IMAP keywords are atoms (ASCII), and SQLite's lower() and
# PostgreSQL's lower() under the "C" collation fold exactly these letters.
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class TextEngine(Protocol):
    """How one backend matches text: a query string for a text-only subtree, and its test."""

    def query(self, node: Node) -> str | None:
        """The engine's query for a text-only subtree; None if it cannot say it in one."""

    def match(self, query: str, node: Node) -> ColumnElement[bool]:
        """The SQL condition that a message matches the query made of ``node``."""

    def with_rank(
        self, stmt: AnySelect, terms: Node | None
    ) -> tuple[AnySelect, ColumnElement[float]]:
        """The statement with a relevance column (higher is better) for these terms added."""

    def label(self, name: str) -> ColumnElement[bool]:
        """The message carries the keyword ``name`` (already ASCII lower-cased)."""

    def one_of(self, key: Any, values: Sequence[Any]) -> ColumnElement[bool]:
        """``key`` is one of ``values`` (ids)."""


class PostgresText:
    """tsquery over the tsvector column; phrases with ``<->``.

    With a session, a phrase's pairs are counted first (``pairs.few_candidates``): few,
    and only those messages are checked; many, and the phrase is common enough for the
    date order to meet its matches early, as it does without pairs.
    """

    def __init__(self, session: Session | Connection | None = None) -> None:
        self.session = session

    def query(self, node: Node) -> str | None:
        """Any text-only subtree is one tsquery."""
        match node:
            case Term(text, field):
                return "(" + " <-> ".join(_lexeme(t) for t in query_tokens(text, field)) + ")"
            case Not(child):
                inner = self.query(child)
                return None if inner is None else f"!{inner}"
            case And(children) | Or(children):
                parts = [self.query(child) for child in children]
                if not parts or None in parts:
                    return None
                joiner = " & " if isinstance(node, And) else " | "
                return "(" + joiner.join(p for p in parts if p is not None) + ")"
        return None

    def match(self, query: str, node: Node) -> ColumnElement[bool]:
        """``vector @@ query``: the small header vector when only fields are searched.

        A phrase the query requires also narrows it to the messages that may hold its
        adjacent pairs (``pairs.candidates``), so positions are checked in those only;
        not on the header vector, small enough to be checked in every row (``from:a.com``
        is in a fifth of the mail: its 21,818 candidates took 200 ms against 7.5 ms).
        """
        fields_only = _fields_only(node)
        vector = SEARCH_HEAD if fields_only else Message.search_text
        condition: ColumnElement[bool] = vector.bool_op("@@")(_tsquery(query))
        keys = set() if fields_only else _required_pairs(node)  # header vectors are small
        if keys and self.session is not None and pairs.few_candidates(self.session, keys):
            condition = and_(condition, Message.id.in_(pairs.candidates(keys)))
        return condition

    def with_rank(
        self, stmt: AnySelect, terms: Node | None
    ) -> tuple[AnySelect, ColumnElement[float]]:
        """``ts_rank_cd`` of the positive terms, on the header vector if they are fields."""
        rank: ColumnElement[float] = literal_column("0.0")
        query = self.query(terms) if terms is not None else None
        if terms is not None and query is not None:
            vector = SEARCH_HEAD if _fields_only(terms) else Message.search_text
            # float4 sent as text rounds on the way; as float8 the cursor compares exactly
            rank = cast(func.ts_rank_cd(vector, _tsquery(query)), DOUBLE_PRECISION)
        return stmt.add_columns(rank.label("rank")), rank

    def label(self, name: str) -> ColumnElement[bool]:
        """A keyword in the JSONB flags list, ASCII case ignored."""
        values = func.jsonb_array_elements_text(Message.flags).table_valued("value")
        folded = func.lower(values.c.value.collate("C"))
        return exists(select(1).select_from(values).where(folded == name))

    def one_of(self, key: Any, values: Sequence[Any]) -> ColumnElement[bool]:
        """``key = ANY(array)``: one parameter however many values, so the statement's
        text is the same for any number of them (statements.py keeps it compiled)."""
        array = bindparam(None, list(values), type_=ARRAY(key.type))
        among: ColumnElement[bool] = key == any_(array)
        return among


def _fields_only(node: Node) -> bool:
    """Whether every Term of a text subtree names a field (the header vector holds them)."""
    match node:
        case Term(_, field):
            return field is not None
        case Not(child):
            return _fields_only(child)
        case And(children) | Or(children):
            return all(_fields_only(child) for child in children)
    return False


def _required_pairs(node: Node) -> set[str]:
    """Pair keys every message matching a text subtree holds (from its required phrases)."""
    match node:
        case Term(text, field):
            return set(pairs.phrase_pairs(query_tokens(text, field)))
        case And(children):
            return set().union(*(_required_pairs(child) for child in children))
    return set()  # a negation requires nothing; an OR only one of its branches


def _lexeme(token: str) -> str:
    """A quoted tsquery lexeme (tokens hold no quote or backslash; escaped all the same)."""
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def _tsquery(query: str) -> ColumnElement[Any]:
    return cast(bindparam(None, query, type_=Text), TSQUERY)


class SqliteText:
    """FTS5 MATCH on the external-content table; phrases as quoted token lists."""

    def query(self, node: Node) -> str | None:
        """FTS5 has only binary NOT: a negation needs a positive sibling in the same AND."""
        match node:
            case Term(text, field):
                return '"' + " ".join(query_tokens(text, field)) + '"'
            case And(children):
                positive = [self.query(c) for c in children if not isinstance(c, Not)]
                negative = [self.query(c.node) for c in children if isinstance(c, Not)]
                if not positive or None in positive or None in negative:
                    return None
                text = "(" + " AND ".join(f"({p})" for p in positive) + ")"
                return text + "".join(f" NOT ({n})" for n in negative)
            case Or(children):
                parts = [self.query(c) for c in children if not isinstance(c, Not)]
                if not parts or len(parts) < len(children) or None in parts:
                    return None
                return "(" + " OR ".join(f"({p})" for p in parts) + ")"
        return None

    def match(self, query: str, node: Node) -> ColumnElement[bool]:
        """The message's rowid is among the FTS5 hits."""
        return MESSAGE_ROWID.in_(self._hits(query))

    def _hits(self, query: str) -> Any:
        condition = FTS.c.email_search.op("MATCH")(bindparam(None, query, type_=Text))
        return select(FTS.c.rowid).where(condition)

    def with_rank(
        self, stmt: AnySelect, terms: Node | None
    ) -> tuple[AnySelect, ColumnElement[float]]:
        """Minus ``bm25`` of the positive terms (FTS5's bm25 is lower for better)."""
        query = self.query(terms) if terms is not None else None
        if query is None:
            rank: ColumnElement[float] = literal_column("0.0")
            return stmt.add_columns(rank.label("rank")), rank
        condition = FTS.c.email_search.op("MATCH")(bindparam(None, query, type_=Text))
        score = func.bm25(literal_column("email_search"))
        scores = select(FTS.c.rowid.label("hit"), score.label("score")).where(condition)
        ranked = scores.subquery("search_rank")
        rank = func.coalesce(-ranked.c.score, 0.0)
        stmt = stmt.outerjoin(ranked, ranked.c.hit == MESSAGE_ROWID)
        return stmt.add_columns(rank.label("rank")), rank

    def label(self, name: str) -> ColumnElement[bool]:
        """A keyword in the JSON flags list, ASCII case ignored."""
        values = func.json_each(Message.flags).table_valued("value")
        return exists(select(1).select_from(values).where(func.lower(values.c.value) == name))

    def one_of(self, key: Any, values: Sequence[Any]) -> ColumnElement[bool]:
        """``key IN (...)``."""
        among: ColumnElement[bool] = key.in_(values)
        return among


def engine_for(dialect: str, session: Session | Connection | None = None) -> TextEngine:
    """The text engine of a backend (``postgresql`` or ``sqlite``); ``session`` lets
    PostgreSQL look at a phrase's pairs before it compiles the phrase."""
    if dialect == "postgresql":
        return PostgresText(session)
    if dialect == "sqlite":
        return SqliteText()
    raise ValueError(f"no full-text search for {dialect!r}")


def is_text(node: Node) -> bool:
    """Whether a subtree is made of Terms only (with Not, And, Or)."""
    match node:
        case Term(text, field):
            return bool(query_tokens(text, field))
        case Not(child):
            return is_text(child)
        case And(children) | Or(children):
            return bool(children) and all(is_text(c) for c in children)
    return False


class Compiler:
    """Turns a tree into a condition on ``email_message`` for one backend."""

    def __init__(
        self, engine: TextEngine, folder_ids: Mapping[Folder, Sequence[uuid.UUID]]
    ) -> None:
        self.engine = engine
        self.folder_ids = folder_ids

    def condition(self, node: Node) -> ColumnElement[bool]:
        """The SQL condition for a node (see ``query_ast`` for what each one means)."""
        if is_text(node):
            query = self.engine.query(node)
            if query is not None:
                return self.engine.match(query, node)
        match node:
            case And(children):
                return self._join(children, And, and_, true())
            case Or(children):
                return self._join(children, Or, or_, false())
            case Not(child):
                return not_(self.condition(child))
        return self._predicate(node)

    def _join(
        self,
        children: tuple[Node, ...],
        kind: type[And] | type[Or],
        combine: Callable[..., ColumnElement[bool]],
        empty: ColumnElement[bool],
    ) -> ColumnElement[bool]:
        text = [c for c in children if is_text(c)]
        rest = [c for c in children if not is_text(c)]
        parts: list[ColumnElement[bool]] = []
        grouped = self.engine.query(kind(tuple(text))) if len(text) > 1 else None
        if grouped is not None:
            parts.append(self.engine.match(grouped, kind(tuple(text))))
        else:
            rest = text + rest
        parts.extend(self.condition(c) for c in rest)
        if not parts:
            return empty
        return parts[0] if len(parts) == 1 else combine(*parts)

    def _predicate(self, node: Node) -> ColumnElement[bool]:
        match node:
            case Term():
                return true()  # no words at all: every message "contains" them
            case Flag(name, value):
                return FLAG_COLUMNS[name] == value
            case HasAttachment():
                return Message.has_attachments == True  # noqa: E712 (SQL, not Python)
            case Folder():
                ids = self.folder_ids.get(node, ())
                return self.engine.one_of(Message.folder_id, ids) if ids else false()
            case Label(name):
                return self.engine.label(name.translate(ASCII_LOWER))
            case DateCmp("<", at):
                return Message.received_date < at
            case DateCmp(_, at):
                return Message.received_date >= at
            case SizeCmp(">", size):
                return Message.size > size
            case SizeCmp(_, size):
                return Message.size < size
            case MessageId(value):
                return Message.message_id == value
        raise TypeError(f"not a search node: {node!r}")
