"""A search past its time limit (SEARCH_TIMEOUT_SECONDS) stops: a 503 problem, nothing held.

On PostgreSQL a search waits on a lock held by another transaction until its
``statement_timeout`` stops it. On SQLite, where readers never wait, the limit is already
over when the first statement starts, so the progress handler stops it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from email_service.config import Settings
from email_service.errors import SearchTimeoutError
from email_service.mail.query import parse
from email_service.store.models import Folder, Message
from email_service.store.search import backend as search_store
from email_service.store.search.backend import count_messages, search_messages
from email_service.store.search.index import search_document
from tests.conftest import TENANT_A
from tests.integration.search_corpus import add_account
from tests.servers.postgres import PG_ADMIN_URL

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# The route's limit here: long enough for the settings statement, short for a test.
PG_LIMIT = 0.3
# Past before the first statement starts: SQLite's progress handler stops it at once.
SQLITE_LIMIT = 1e-9
SUBJECTS = ("quarterly report", "quarterly plan", "quarterly budget")
# Other messages, enough that a statement runs past SQLite's first progress check.
FILLERS = 300


@pytest.fixture
def settings(backend: str, make_settings: Callable[..., Settings]) -> Settings:
    """The app's settings with a search limit this test can reach on its backend."""
    return make_settings(search_timeout_seconds=PG_LIMIT if backend == "postgres" else SQLITE_LIMIT)


@pytest.fixture
def stored(runtime: Any) -> list[uuid.UUID]:
    """Three messages of tenant A that the word ``quarterly`` finds, then the fillers."""
    rows = [{"subject": s, "body_text": f"the {s} is attached"} for s in SUBJECTS]
    rows += [{"subject": f"note {n}", "body_text": "nothing to see"} for n in range(FILLERS)]
    with runtime.db.session() as session:
        account = add_account(session, TENANT_A)
        folder = Folder(tenant_id=TENANT_A, account_id=account.id, raw_name="INBOX",
                        name="INBOX", role="inbox")  # fmt: skip
        session.add(folder)
        session.flush()
        messages = [_message(folder, uid, row) for uid, row in enumerate(rows, start=1)]
        session.add_all(messages)
        session.flush()
        return [message.id for message in messages[: len(SUBJECTS)]]


def _message(folder: Folder, uid: int, row: dict[str, Any]) -> Message:
    return Message(
        tenant_id=folder.tenant_id, account_id=folder.account_id, folder_id=folder.id, uid=uid,
        uidvalidity=1, received_date=NOW - timedelta(days=uid), size=100, blob_sha256="0" * 64,
        search_text=search_document(row), **row,
    )  # fmt: skip


@contextmanager
def _held(runtime: Any) -> Iterator[None]:
    """PostgreSQL: another transaction holds email_message, so a search has to wait."""
    if runtime.db.dialect != "postgresql":
        yield
        return
    with runtime.db.engine.connect() as conn:
        conn.execute(text("LOCK TABLE email_message IN ACCESS EXCLUSIVE MODE"))
        yield
        conn.rollback()


def _limit(runtime: Any) -> float:
    return PG_LIMIT if runtime.db.dialect == "postgresql" else SQLITE_LIMIT


def test_a_search_past_its_limit_is_a_503_problem(
    client: Any, as_tenant: Any, runtime: Any, stored: list[uuid.UUID]
) -> None:
    params = {"query": "quarterly", "order": "date"}
    # the lock is released before the pool waits for its thread, even if the request hangs
    with ThreadPoolExecutor(1) as pool, _held(runtime):
        pending = pool.submit(
            client.get, "/api/sync/search", query_string=params, headers=as_tenant(TENANT_A)
        )
        answer = pending.result(timeout=60)
    assert answer.status_code == 503, answer.get_json()
    assert answer.mimetype == "application/problem+json"
    problem = answer.get_json()
    assert problem["code"] == "search_timeout"
    assert f"within {_limit(runtime):g} s" in problem["detail"]
    if runtime.db.dialect == "postgresql":  # nothing waits any more: the same search answers
        again = client.get("/api/sync/search", query_string=params, headers=as_tenant(TENANT_A))
        assert again.status_code == 200
        assert {item["id"] for item in again.get_json()["items"]} == {str(i) for i in stored}


@contextmanager
def _opened(runtime: Any, on: str) -> Iterator[Any]:
    """A Session (its transaction), or a connection of the search pool as the route uses."""
    with runtime.db.session() if on == "session" else runtime.db.searching() as opened:
        yield opened


@pytest.mark.parametrize("on", ["session", "search pool"])
@pytest.mark.parametrize("run", ["search", "count"])
def test_search_and_count_stop_at_the_limit_and_leave_the_connection_as_it_was(
    runtime: Any, stored: list[uuid.UUID], run: str, on: str
) -> None:
    node = parse("quarterly", NOW)
    held = _held(runtime)
    with pytest.raises(SearchTimeoutError) as raised, held, _opened(runtime, on) as session:
        if run == "search":
            search_messages(session, TENANT_A, node, limit=10, timeout=_limit(runtime))
        else:
            count_messages(session, TENANT_A, node, timeout=_limit(runtime))
    assert raised.value.details == {"timeout": _limit(runtime)}
    # the pooled connection has no limit left on it (SQLite: no progress handler)
    with _opened(runtime, on) as session:
        assert count_messages(session, TENANT_A, node) == len(stored)
        page = search_messages(session, TENANT_A, node, limit=10)
    assert {hit.message.id for hit in page.items} == set(stored)


def test_the_limit_lasts_for_the_transaction_and_keeps_a_shorter_server_limit(
    runtime: Any, stored: list[uuid.UUID]
) -> None:
    if runtime.db.dialect != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    node = parse("quarterly", NOW)
    with runtime.db.session() as session:
        default = session.scalar(text("SHOW statement_timeout"))
    assert default == "0"  # the test server sets none, else the checks below show nothing
    with runtime.db.session() as session:
        assert len(search_messages(session, TENANT_A, node, limit=10, timeout=2.5).items) == 3
        assert session.scalar(text("SHOW statement_timeout")) == "2500ms"
    with runtime.db.session() as session:
        assert session.scalar(text("SHOW statement_timeout")) == default
        search_messages(session, TENANT_A, node, limit=10, timeout=None)
        assert session.scalar(text("SHOW statement_timeout")) == default
    with runtime.db.session() as session:  # an operator's shorter limit stays
        session.execute(text("SET LOCAL statement_timeout = '100ms'"))
        search_messages(session, TENANT_A, node, limit=10, timeout=10)
        assert session.scalar(text("SHOW statement_timeout")) == "100ms"
    with runtime.db.session() as session:  # under a millisecond is one, not 0 (none)
        search_store._custom_plans(session, 1e-6)
        assert session.scalar(text("SHOW statement_timeout")) == "1ms"


def test_a_search_pool_connection_keeps_the_settings_and_no_other_connection_gets_them(
    runtime: Any, stored: list[uuid.UUID]
) -> None:
    """The search pool's connections carry the limit and plan settings for their life (a
    search is one statement); they are set again for another limit, and the main pool's
    connections, which run everything else, never have them."""
    if runtime.db.dialect != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    node = parse("quarterly", NOW)
    with runtime.db.searching() as conn:
        assert len(search_messages(conn, TENANT_A, node, limit=10, timeout=2.5).items) == 3
        assert conn.scalar(text("SHOW statement_timeout")) == "2500ms"
        assert conn.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
        pid = conn.scalar(text("SELECT pg_backend_pid()"))
    with runtime.db.searching() as conn:  # the same connection, asked for another limit
        assert conn.scalar(text("SELECT pg_backend_pid()")) == pid
        search_messages(conn, TENANT_A, node, limit=10, timeout=4)
        assert conn.scalar(text("SHOW statement_timeout")) == "4s"
        count_messages(conn, TENANT_A, node, timeout=None)
        assert conn.scalar(text("SHOW statement_timeout")) == "0"
        assert conn.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
    with runtime.db.session() as session:
        assert session.scalar(text("SHOW statement_timeout")) == "0"
        assert session.scalar(text("SHOW plan_cache_mode")) == "auto"


def test_a_search_pool_connection_keeps_a_shorter_limit_of_the_database(
    runtime: Any, stored: list[uuid.UUID]
) -> None:
    if runtime.db.dialect != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    with runtime.db.engine.connect() as conn:
        name = conn.scalar(text("SELECT current_database()"))
    alter = f'ALTER DATABASE "{name}"'
    runtime.db.dispose()  # new connections start with the database's setting
    try:
        _as_admin(f"{alter} SET statement_timeout = '100ms'")
        with runtime.db.searching() as conn:
            search_messages(conn, TENANT_A, parse("quarterly", NOW), limit=10, timeout=10)
            assert conn.scalar(text("SHOW statement_timeout")) == "100ms"
    finally:
        _as_admin(f"{alter} RESET statement_timeout")
        runtime.db.dispose()


def _as_admin(statement: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement.encode())
