"""SELECTs on PostgreSQL without SQLAlchemy's per-statement work: the list routes, and the
send's state changes (a SELECT whose CTEs write, each with its change-log rows, run alone
as its own transaction).

A Core ``Select`` is compiled once per statement object (:class:`Prepared`: its SQL, which
bind parameters it takes and the type processors of its parameters and columns), then run
as a psycopg prepared statement on a pooled connection in autocommit, the way the floor of
``bench/api`` runs its one SELECT. What SQLAlchemy would do around it is kept: the pool's
checkout (with its ping after idle), the transaction's row-level-security scope
(``rls.apply_scope``, the same call as the engine's ``begin`` event), the types' bind and
result processing (UTC datetimes, UUIDs), and a connection that failed is invalidated.
Rows are named tuples: ``row.column`` and ``row[i]`` as with SQLAlchemy's ``Row``.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import BindParameter, Connection, Dialect, Engine, Float, Select

from email_service.store import rls, scope
from email_service.store.models import UTCDateTime

Processor = Callable[[Any], Any]


class Prepared:
    """A SELECT compiled for ``engine``'s dialect, with its processors."""

    def __init__(
        self, statement: Select[Any], engine: Engine | Connection, cache_key: Any = None
    ) -> None:
        dialect = engine.dialect
        # with its cache key, parameters of other statements of its shape can be given
        compiled = statement.compile(dialect=dialect, cache_key=cache_key)
        self.compiled = compiled
        self.sql = compiled.string
        self.binds: dict[str, Processor] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.binds[name] = processor
        columns = list(statement.selected_columns)
        self.results: list[tuple[int, Processor]] = []
        for index, column in enumerate(columns):
            read = _result_processor(column.type, dialect)
            if read is not None:
                self.results.append((index, read))
        self.row: Any = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]

    def parameters(
        self, given: dict[str, Any], extracted: Sequence[BindParameter[Any]] | None = None
    ) -> dict[str, Any]:
        """The statement's parameters from ``given`` (others ignored), processed.

        ``extracted``: the bind parameters of another statement of the same shape (its
        cache key's), whose values then take the place of the compiled statement's own.
        """
        values = dict(self.compiled.construct_params(given, extracted_parameters=extracted))
        for name, processor in self.binds.items():
            values[name] = processor(values[name])
        return values

    def rows(self, fetched: list[tuple[Any, ...]]) -> list[Any]:
        """The fetched tuples as rows, each column's result processing applied."""
        if not self.results:
            return [self.row._make(values) for values in fetched]
        out = []
        for values in fetched:
            items = list(values)
            for index, processor in self.results:
                items[index] = processor(items[index])
            out.append(self.row._make(items))
        return out


def _result_processor(type_: Any, dialect: Dialect) -> Processor | None:
    """The column type's result processing; UTCDateTime's without SQLAlchemy's wrapper."""
    if isinstance(type_, UTCDateTime):
        return _utc
    if isinstance(type_, Float) and not type_.asdecimal:
        return None  # float4/float8 arrive as float (the dialect's wants the column's oid)
    processor: Processor | None = type_.dialect_impl(dialect).result_processor(dialect, None)
    return processor


def _utc(value: datetime | None) -> datetime | None:
    """What UTCDateTime reads back (aware UTC), one call per value."""
    if value is None or value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Result(list[Any]):
    """The rows of one SELECT; ``all()`` as on SQLAlchemy's result."""

    def all(self) -> list[Any]:
        """Every row."""
        return list(self)

    def one(self) -> Any:
        """The one row; ValueError if there are none or several."""
        if len(self) != 1:
            raise ValueError(f"one row expected, {len(self)} found")
        return self[0]


class Reader:
    """:meth:`execute` for SELECT statements built once (the list routes' statements)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.prepared: dict[int, tuple[Select[Any], Prepared]] = {}
        self.lock = threading.Lock()

    def _prepared(self, statement: Select[Any]) -> Prepared:
        found = self.prepared.get(id(statement))
        if found is not None and found[0] is statement:
            return found[1]
        prepared = Prepared(statement, self.engine)
        with self.lock:  # the statement is kept too, so its id is never reused
            self.prepared[id(statement)] = (statement, prepared)
        return prepared

    def execute(self, statement: Select[Any], params: dict[str, Any] | None = None) -> Result:
        """Run ``statement`` in the current scope; its rows."""
        prepared = self._prepared(statement)
        values = prepared.parameters(params or {})
        pooled = self.engine.raw_connection()
        try:
            connection = pooled.driver_connection
            assert isinstance(connection, psycopg.Connection)
            rls.apply_scope(connection, pooled.info, scope.current())
            connection.autocommit = True  # one round trip: no BEGIN, no ROLLBACK at checkin
            try:
                cursor = connection.execute(prepared.sql, values, prepare=True)
                fetched = cursor.fetchall()
            finally:
                if not connection.closed:
                    connection.autocommit = False
        except psycopg.OperationalError:
            pooled.invalidate()  # a broken connection does not go back to the pool
            raise
        finally:
            pooled.close()
        return Result(prepared.rows(fetched))
