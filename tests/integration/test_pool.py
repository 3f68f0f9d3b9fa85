"""PostgreSQL connections: a pooled connection idle for a while is pinged before use, so
one killed by the server (a restart, an administrator) is replaced, not handed to a
request; a connection used a moment ago is trusted without that extra round trip. Read
sessions run each statement on its own, without BEGIN and COMMIT."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from email_service.store import db as db_module
from email_service.store.db import Database
from tests.servers.postgres import PG_ADMIN_URL


@pytest.fixture
def database(pg_database: str) -> Iterator[Database]:
    url = make_url(pg_database).set(drivername="postgresql+psycopg")
    database = Database(url.render_as_string(hide_password=False))
    yield database
    database.dispose()


def _pings(monkeypatch: pytest.MonkeyPatch, database: Database) -> list[str]:
    """Each ping's outcome, in order: ``alive`` or ``dead``."""
    pings: list[str] = []
    real = database.engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        try:
            answer = bool(real(dbapi_connection))
        except psycopg.Error:
            pings.append("dead")
            raise
        pings.append("alive")
        return answer

    monkeypatch.setattr(database.engine.dialect, "do_ping", counting)
    return pings


def _backend_pid(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_used_a_moment_ago_is_not_pinged(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = _pings(monkeypatch, database)
    first = _backend_pid(database)
    assert _backend_pid(database) == first  # the same pooled connection, no ping
    assert pings == []


def test_an_idle_connection_killed_by_the_server_is_replaced(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend_pid(database)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone() == (True,)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)  # as if idle for a while
    pings = _pings(monkeypatch, database)
    second = _backend_pid(database)  # would raise if the dead connection were handed out
    assert second != first
    assert pings == ["dead", "alive"]  # the killed one, then its replacement (window 0)


def _transaction_times(session: Any) -> list[Any]:
    return [
        session.execute(text("SELECT transaction_timestamp(), pg_sleep(0.01)")).first()[0]
        for _ in range(2)
    ]


def test_a_read_session_runs_each_statement_on_its_own(database: Database) -> None:
    with database.reading() as session:
        first, second = _transaction_times(session)
    assert first < second  # two transactions: autocommit
    with database.session() as session:
        first, second = _transaction_times(session)
    assert first == second  # one transaction
