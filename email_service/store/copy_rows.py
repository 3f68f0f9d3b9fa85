"""Bulk inserts through PostgreSQL's COPY, for batches that are new by construction.

A sync batch holds only UIDs the store did not have, so a unique violation is a rare race
(another run of the same folder got there first). The batch is therefore COPYed inside a
savepoint: no SQL text to build or parse per row. PostgreSQL refuses COPY FROM into a
table under row-level security (``store/rls.py``), so the rows go into a temporary table
of the connection first and move into theirs with one INSERT, which the policies check.
If a row already exists the savepoint is rolled back and ``copy_new_rows`` answers
``False``: the caller then inserts with ``ON CONFLICT DO NOTHING``, row by row semantics.

Values are converted by the columns' own bind processors, as an INSERT would bind them
(JSON documents, ``SearchText`` as a tsvector, aware datetimes in UTC), and Python-side
column defaults (``created_at``, ``updated_at`` ...) are filled in, since COPY bypasses
SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql
from psycopg.errors import UniqueViolation
from sqlalchemy import Column, Table
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ColumnDefault


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
    dialect = session.get_bind().dialect
    # Columns the rows leave out and SQLAlchemy has no default for keep the server's
    # (an identity key, a generated column): COPY does not name them.
    named = [(c, d) for c in table.columns if (d := _default(c)) is not None or c.key in rows[0]]
    # What an INSERT would bind: the columns' own processors (None: sent as it is).
    converters = [c.type.dialect_impl(dialect).bind_processor(dialect) for c, _ in named]
    columns = sql.SQL(", ").join(sql.Identifier(c.name) for c, _ in named)
    target, stage = sql.Identifier(table.name), sql.Identifier("pg_temp", f"copy_{table.name}")
    nested = session.begin_nested()
    # Asking for the connection inside the nested transaction emits the SAVEPOINT.
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a live psycopg connection inside the session's transaction
    try:
        with raw.cursor() as cursor:
            cursor.execute(_STAGE.format(stage, target))
            with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns)) as copy:
                for row in rows:
                    copy.write_row(_values(row, named, converters))
            cursor.execute(_MOVE.format(stage, columns, target, columns, columns))
    except UniqueViolation:
        nested.rollback()
        return False
    nested.commit()
    return True


# The connection's staging table: the target's columns, no constraints, emptied at commit.
# Sent in the same round trip, before it: large values (bodies, HTML, headers, the search
# vector) of the rest of this transaction are compressed with lz4 where the server has it
# (PostgreSQL 14+ built with lz4, as Debian's and the official images are), not pglz. A
# batch's rows are compressed in the staging table and moved as they are, so pglz was
# about 15 % of the server's CPU for a sync batch; lz4 is several times cheaper both ways,
# and readers decompress either kind. Without lz4 the SELECT matches no row: pglz stays.
_LZ4 = (
    "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings"
    " WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals); "
)
_STAGE = sql.SQL(
    _LZ4 + "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS TABLE {} WITH NO DATA"
)
# One statement moves the batch and leaves the staging table empty for the next one.
_MOVE = sql.SQL(
    "WITH moved AS (DELETE FROM {} RETURNING {}) INSERT INTO {} ({}) SELECT {} FROM moved"
)


def _values(
    row: dict[str, Any],
    named: list[tuple[Column[Any], Callable[[], Any] | None]],
    converters: list[Any],
) -> list[Any]:
    values = []
    for (column, default), convert in zip(named, converters, strict=True):
        value = row.get(column.key) if column.key in row else _missing(default)
        values.append(convert(value) if convert and value is not None else value)
    return values


def _missing(default: Callable[[], Any] | None) -> Any:
    return default() if default is not None else None
