"""A search's SELECTs on PostgreSQL as prepared statements, compiled once per shape.

A search builds its statement from the query tree on every request; SQLAlchemy would then
look its compiled form up by the statement's cache key (which holds the shape, not the
values), process parameters and results through its execution context, and make Rows:
about as much Python as the statement takes PostgreSQL to run (bench/search). Here the
compiled form of each shape is kept as a :class:`reader.Prepared` (its SQL, bind and result
processing), the request's values are taken from its own cache key, and the statement runs
as a psycopg prepared statement on the connection the search was given (the search pool's,
in autocommit, or a Session's, in its transaction), as the caller's scope (row-level
security). The planner still plans each execution for its values: the search connections
set ``plan_cache_mode = force_custom_plan`` (``backend._custom_plans``).

A failure is raised as SQLAlchemy would raise it (``sqlalchemy.exc.DBAPIError`` wrapping
the driver's error), and a connection found broken is invalidated. The engine's
``before_cursor_execute`` and ``after_cursor_execute`` listeners see each statement and
its parameters (with no execution context). Other backends, and statements whose SQL
depends on their values (expanding ``IN`` lists), run through SQLAlchemy.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, exc
from sqlalchemy.sql.cache_key import CacheKey

from email_service.store import rls, scope
from email_service.store.reader import Prepared
from email_service.store.search.sql import AnySelect

# Shapes kept compiled per process: a shape is a query tree's form (which operators, which
# fields, how many folders), so a few hundred cover what users type; past that the
# oldest are dropped (insertion order), as SQLAlchemy's own cache does with its LRU.
MAX_SHAPES = 500

_shapes: dict[Any, Prepared | None] = {}
_lock = threading.Lock()


def rows(conn: Connection, statement: AnySelect) -> list[Any]:
    """The rows of a SELECT: named tuples (``row.column``, ``row[i]``, unpacking)."""
    if conn.dialect.name != "postgresql":
        return list(conn.execute(statement).all())
    key = statement._generate_cache_key()
    prepared = _prepared(conn, statement, key) if key is not None else None
    if key is None or prepared is None:
        return list(conn.execute(statement).all())
    values = prepared.parameters({}, key.bindparams)
    pooled = conn.connection
    raw = pooled.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        rls.apply_scope(raw, pooled.info, scope.current())
        fetched = _execute(conn, raw.cursor(), prepared.sql, values)
    except psycopg.Error as error:
        broken = conn.dialect.is_disconnect(cast(Any, error), cast(Any, raw), None)
        if broken:
            conn.invalidate()
        raise exc.DBAPIError.instance(
            prepared.sql, None, error, psycopg.Error, hide_parameters=True,
            connection_invalidated=broken, dialect=conn.dialect,
        ) from None  # fmt: skip
    return prepared.rows(fetched)


def _execute(
    conn: Connection, cursor: psycopg.Cursor[Any], sql: str, values: dict[str, Any]
) -> list[Any]:
    """Run it prepared; the engine's cursor listeners, if any, see it (context None)."""
    listening = conn.dispatch
    if listening.before_cursor_execute:
        listening.before_cursor_execute(conn, cursor, sql, values, None, False)
    fetched = cursor.execute(sql, values, prepare=True).fetchall()
    if listening.after_cursor_execute:
        listening.after_cursor_execute(conn, cursor, sql, values, None, False)
    return fetched


def _prepared(conn: Connection, statement: AnySelect, key: CacheKey) -> Prepared | None:
    """The compiled form of the statement's shape; None if its SQL depends on its values."""
    shape = key.key
    try:
        return _shapes[shape]
    except KeyError:
        pass
    prepared: Prepared | None = Prepared(statement, conn, key)
    compiled = prepared.compiled if prepared is not None else None
    if compiled is not None and (compiled.post_compile_params or compiled.literal_execute_params):
        prepared = None
    with _lock:
        if len(_shapes) >= MAX_SHAPES:
            del _shapes[next(iter(_shapes))]
        _shapes[shape] = prepared
    return prepared
