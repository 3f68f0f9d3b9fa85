"""Bulk inserts through PostgreSQL's COPY, for batches that are new by construction.

A sync batch holds only UIDs the store did not have, so a unique violation is a rare race
(another run of the same folder got there first). The batch is therefore COPYed straight
into its table inside a savepoint: one statement, no SQL text to build or parse per row.
If a row already exists the savepoint is rolled back and ``copy_new_rows`` answers
``False``: the caller then inserts with ``ON CONFLICT DO NOTHING``, row by row semantics.

Values are converted as the model's column types would bind them (JSON documents,
``SearchText`` as a tsvector, aware datetimes in UTC), and Python-side column defaults
(``created_at``, ``updated_at`` ...) are filled in, since COPY bypasses SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import sql
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Column, Table
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ColumnDefault

from email_service.store.search_index import SearchText, StoredVector, to_tsvector_text

Convert = Callable[[Any], Any]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given; use timezone-aware UTC")
    return value.astimezone(UTC)


def _json(value: Any) -> Any:
    return None if value is None else Jsonb(value)


def _tsvector(value: str | None) -> str | None:
    if value is None or isinstance(value, StoredVector):
        return value
    return to_tsvector_text(value)


def _converter(column: Column[Any]) -> Convert | None:
    """How a Python value of this column becomes what COPY sends (None: as it is)."""
    kind = column.type
    if isinstance(kind, SearchText):
        return _tsvector
    if isinstance(kind, JSON) or isinstance(getattr(kind, "impl", None), JSON):
        return _json
    if getattr(kind, "timezone", False) or getattr(getattr(kind, "impl", None), "timezone", False):
        return _utc
    return None


def _default(column: Column[Any]) -> Callable[[], Any] | None:
    """The column's Python-side default as a function of nothing (None: no default)."""
    default = column.default
    if not isinstance(default, ColumnDefault) or default.is_clause_element:
        return None  # none, or SQL the server evaluates: COPY cannot send it
    if default.is_callable:
        function = default.arg  # SQLAlchemy's wrapper takes an (unused) execution context
        return lambda: function(None)
    value = default.arg
    return lambda: value


def copy_new_rows(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> bool:
    """COPY rows into the model's table; False (nothing inserted) if one already exists."""
    if not rows:
        return True
    table: Table = model.__table__
    # Columns the rows leave out and SQLAlchemy has no default for keep the server's
    # (an identity key, a generated column): COPY does not name them.
    columns = [c for c in table.columns if c.key in rows[0] or _default(c) is not None]
    converters = [_converter(c) for c in columns]
    defaults = [_default(c) for c in columns]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    )
    nested = session.begin_nested()
    # Asking for the connection inside the nested transaction emits the SAVEPOINT.
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a live psycopg connection inside the session's transaction
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = []
                for column, convert, default in zip(columns, converters, defaults, strict=True):
                    value = row.get(column.key) if column.key in row else _missing(default)
                    values.append(convert(value) if convert and value is not None else value)
                copy.write_row(values)
    except UniqueViolation:
        nested.rollback()
        return False
    nested.commit()
    return True


def _missing(default: Callable[[], Any] | None) -> Any:
    return default() if default is not None else None
