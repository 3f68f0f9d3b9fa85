"""Engine and session factory for PostgreSQL (psycopg 3) and SQLite (embedded default)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pydantic_core
from sqlalchemy import Connection, CursorResult, Engine, Table, create_engine, event, exc, text
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from email_service.files import FILE_MODE, private_dir
from email_service.store import rls, scope
from email_service.store.reader import Reader

# SQLite waits this long (ms) for a writer lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 15_000
# Connections per process: Gunicorn threads + headroom for health checks.
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 10
# Fail fast when PostgreSQL is unreachable instead of hanging a request thread.
PG_CONNECT_TIMEOUT_S = 5
# A pooled connection idle longer than this is pinged before use (a PostgreSQL restart
# leaves every pooled connection dead); one used more recently is trusted, as HikariCP's
# aliveBypassWindowMs does, which spares busy workers a round trip per request.
PING_AFTER_IDLE_S = 0.5
# Connections per process kept for searches (Database.searching): their settings (plans,
# statement_timeout) are the connection's, so they never serve other statements.
PG_SEARCH_POOL_SIZE = 5
PG_SEARCH_MAX_OVERFLOW = 5
# Execution option of the search pool's connections: search settings may be left on them.
SEARCH_POOL = "email_service_search_pool"
_LAST_USED = "email_service.last_used"


def jsonb_loads(data: bytes | str) -> Any:
    """A JSONB value as PostgreSQL writes it (valid JSON, one value), as json.loads gives it.

    A search page reads two JSONB columns of each of its rows (flags, recipients):
    pydantic-core's parser (already what the routes write JSON with) takes the bytes as
    they come, in half the time of the json module's scanner on such small values, where
    ``json.loads`` of bytes first guesses their encoding. What it refuses (a lone
    surrogate escape, which json.loads accepts; text that is not JSON) goes to
    ``json.loads``, which answers or raises as it always did.
    """
    try:
        return pydantic_core.from_json(data)
    except ValueError:
        return json.loads(data)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed: deleted mail goes
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(
    url: str,
    echo: bool = False,
    pool_size: int = PG_POOL_SIZE,
    max_overflow: int = PG_MAX_OVERFLOW,
    **options: Any,
) -> Engine:
    """Create an engine with settings suited to the backend (``options``: PostgreSQL's
    further ``create_engine`` arguments)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_dir(Path(parsed.database).parent)
            # Mail text lives here, and SQLite gives the -wal and -shm files its mode.
            os.close(os.open(parsed.database, os.O_CREAT | os.O_WRONLY, FILE_MODE))
        engine = create_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": 15},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url,
        echo=echo,
        hide_parameters=True,  # bound values (message text, ciphertext) never enter error text
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
        **options,
    )
    _ping_idle_connections(engine)
    event.listen(engine, "connect", _utc_session)
    event.listen(engine, "begin", _scope_transaction)
    return engine


def _utc_session(dbapi_connection: Any, _record: Any) -> None:
    """A new PostgreSQL connection reads timestamps in UTC, whatever the server's TimeZone:
    psycopg then gives them ``datetime.UTC`` as their zone, which UTCDateTime and the
    Reader keep as they are instead of converting each value from the server's zone."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True  # a session setting, outside any transaction
    try:
        dbapi_connection.execute("SET TIME ZONE 'UTC'")
    finally:
        dbapi_connection.autocommit = autocommit


def _scope_transaction(conn: Any) -> None:
    """Every PostgreSQL transaction runs as the caller's scope (row-level security)."""
    rls.apply_scope(conn.connection.dbapi_connection, conn.connection.info, scope.current())


def _ping_idle_connections(engine: Engine) -> None:
    """Survive a PostgreSQL restart without 500s: ping a connection idle for a while.

    A failed ping makes the pool drop that connection and hand out a new one
    (DisconnectionError on checkout), so a request never sees the dead connection.
    """

    def used(_dbapi: Any, record: Any, *_: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            if engine.dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.DisconnectionError(str(error)) from error
            raise

    event.listen(engine, "connect", used)
    event.listen(engine, "checkin", used)
    event.listen(engine, "checkout", checkout)


def changed(session: Session, statement: Any, params: dict[str, Any] | None = None) -> bool:
    """Run a conditional UPDATE/DELETE; True if it hit the one row (the condition held).

    A statement built once on the table (see :func:`table_of`) with ``params`` for its
    bind parameters skips building, cache-keying and the ORM's bulk path on every call.
    """
    if "synchronize_session" not in statement.get_execution_options():
        statement = statement.execution_options(synchronize_session=False)
    result = session.execute(statement, params)
    return cast(CursorResult[Any], result).rowcount == 1


def insert_into(session: Session, model: Any) -> PgInsert | SqliteInsert:
    """A Core INSERT on the model's table in the session's dialect, which has
    ``on_conflict_do_nothing``/``do_update`` (both backends spell them alike). On the table,
    not the model: executemany batches rows into multi-VALUES statements
    (insertmanyvalues), where ORM bulk inserts with RETURNING go row by row."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table_of(model))
    return sqlite_insert(table_of(model))


def table_of(model: Any) -> Table:
    """A model's table, for Core statements built once at import."""
    return cast(Table, model.__table__)


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.engine = make_engine(url, echo=echo)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.reads = sessionmaker(self._autocommit_engine, expire_on_commit=False)
        self.reader = Reader(self.engine) if self.engine.dialect.name == "postgresql" else None
        self._search_engine = self._autocommit_engine
        if self.engine.dialect.name == "postgresql":  # SQLite has no per-connection settings
            sizes = (PG_SEARCH_POOL_SIZE, PG_SEARCH_MAX_OVERFLOW)
            own = make_engine(url, echo, *sizes, json_deserializer=jsonb_loads)
            self._search_engine = own.execution_options(
                isolation_level="AUTOCOMMIT", **{SEARCH_POOL: True}
            )

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Each engine with a pool of its own: the main one, then the search pool's."""
        search = self._search_engine.engine
        return (self.engine,) if search is self.engine else (self.engine, search)

    @property
    def dialect(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def operator_session(self, reason: str) -> Iterator[Session]:
        """:meth:`session` in the audited operator scope: it may cross tenants."""
        with scope.operator_scope(reason), self.session() as session:
            yield session

    @contextmanager
    def operator_reading(self, reason: str) -> Iterator[Session]:
        """:meth:`reading` in the audited operator scope: it may cross tenants."""
        with scope.operator_scope(reason), self.reading() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only: each statement runs on its own (autocommit), so a
        request that reads once costs one round trip instead of BEGIN, SELECT, COMMIT."""
        with self.reads() as session:
            yield session

    @contextmanager
    def autocommit(self) -> Iterator[Session]:
        """A session whose statements each commit on their own: one round trip for a
        single conditional write that needs no change-log row (no BEGIN, no COMMIT)."""
        with self.reads() as session:
            yield session

    @contextmanager
    def rows(self) -> Iterator[Connection | Reader]:
        """:meth:`reading` without the ORM, for SELECTs of columns built once (the list
        routes): on PostgreSQL a :class:`Reader` (prepared statements on the pooled psycopg
        connection, store/reader.py), elsewhere a Core connection in autocommit. Either
        runs as the caller's scope (row-level security)."""
        if self.reader is not None:
            yield self.reader
            return
        with self._autocommit_engine.connect() as conn:
            yield conn

    @contextmanager
    def searching(self) -> Iterator[Connection]:
        """:meth:`rows` for searches, on PostgreSQL from a pool of their own: a connection
        keeps the search settings (``store.search.backend``) for its life, so a search is
        one statement, without BEGIN, the settings and ROLLBACK around it."""
        with self._search_engine.connect() as conn:
            yield conn

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections (after fork, at shutdown)."""
        for engine in self.engines:
            engine.dispose()
