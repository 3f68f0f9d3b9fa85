"""The partial indexes of migration 0006 serve the statements the service really runs.

A partial index helps only if the planner can prove that the query's WHERE implies the
index's predicate; a query that came to compile ``seen = $1`` instead of ``seen = false``
(or ``seen IS false``) would quietly fall back to reading the tenant's messages end to end.
So each statement is captured as the service sends it and planned with the index under
test as the only way in: on PostgreSQL the other indexes are dropped inside a transaction
that is rolled back, on SQLite ``INDEXED BY`` fails outright when the index cannot serve.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from email_service.mail.query import parse
from email_service.services.messages import MessageFilter, list_messages
from email_service.store import rls, scope
from email_service.store.search.backend import search_messages
from tests.conftest import TENANT_A

NOW = datetime(2026, 12, 1, tzinfo=UTC)
FOLDER = uuid.UUID(int=7)


def _search(query: str) -> Callable[[Any], object]:
    return lambda session: search_messages(
        session, TENANT_A, parse(query, NOW), limit=20, order="date"
    )


def _listing(**filters: Any) -> Callable[[Any], object]:
    return lambda session: list_messages(session, TENANT_A, MessageFilter(**filters), limit=20)


CASES = [
    pytest.param("idx_email_message_unread", _search("is:unread"), id="search is:unread"),
    pytest.param(
        "idx_email_message_unread", _search("is:unread has:attachment"), id="search and more"
    ),
    pytest.param("idx_email_message_unread", _listing(seen=False), id="list unread"),
    pytest.param(
        "idx_email_message_folder_unread",
        _listing(folder_id=FOLDER, seen=False),
        id="list a folder's unread",
    ),
    pytest.param("idx_email_message_flagged", _search("is:flagged"), id="search is:flagged"),
    pytest.param("idx_email_message_flagged", _listing(flagged=True), id="list flagged"),
]


@contextmanager
def _captured(runtime: Any) -> Iterator[list[tuple[str, Any]]]:
    """The message-list statements (statement, parameters) sent while the block runs."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM email_message" in statement and "ORDER BY" in statement:
            sent.append((statement, parameters))

    event.listen(runtime.db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", record)


def _plan_postgres(runtime: Any, index: str, statement: str, parameters: Any) -> str:
    """The plan when ``index`` is the only index on email_message (rolled back after): the
    owner drops the others, then the tenant's plan is asked for under its policies."""
    with scope.owner_scope(), runtime.db.engine.connect() as conn, conn.begin() as transaction:
        others = conn.scalars(
            text(
                "SELECT indexname FROM pg_indexes "
                "WHERE tablename = 'email_message' AND indexname <> :keep"
            ),
            {"keep": index},
        ).all()
        for name in others:
            # constraints own some indexes: drop those through their constraint
            owner = conn.scalar(
                text("SELECT conname FROM pg_constraint WHERE conindid = CAST(:n AS regclass)"),
                {"n": name},
            )
            if owner:
                conn.exec_driver_sql(f'ALTER TABLE email_message DROP CONSTRAINT "{owner}" CASCADE')
            else:
                conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        as_tenant = "SELECT set_config('role', :role, true), set_config(:name, :tenant, true)"
        conn.execute(
            text(as_tenant), {"role": rls.APP_ROLE, "name": rls.TENANT_SETTING, "tenant": TENANT_A}
        )
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        transaction.rollback()
    return "\n".join(row[0] for row in rows)


def _plan_sqlite(runtime: Any, index: str, statement: str, parameters: Any) -> str:
    """EXPLAIN QUERY PLAN with ``INDEXED BY index``: an error if it cannot serve."""
    forced = statement.replace("FROM email_message", f"FROM email_message INDEXED BY {index}", 1)
    with runtime.db.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + forced, parameters).all()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(("index", "run"), CASES)
def test_the_partial_index_serves_the_statement(
    runtime: Any, index: str, run: Callable[[Any], object]
) -> None:
    with _captured(runtime) as sent, runtime.db.session() as session:
        run(session)
    assert len(sent) == 1, sent
    statement, parameters = sent[0]
    if runtime.db.dialect == "postgresql":
        plan = _plan_postgres(runtime, index, statement, parameters)
    else:
        plan = _plan_sqlite(runtime, index, statement, parameters)
    assert index in plan, plan
    assert "Seq Scan" not in plan and "SCAN email_message\n" not in plan + "\n", plan


def test_a_condition_the_index_does_not_cover_cannot_use_it(runtime: Any) -> None:
    """The check above can fail: read mail is not in the unread index."""
    with _captured(runtime) as sent, runtime.db.session() as session:
        _search("is:read")(session)
    statement, parameters = sent[0]
    if runtime.db.dialect == "postgresql":
        plan = _plan_postgres(runtime, "idx_email_message_unread", statement, parameters)
        assert "idx_email_message_unread" not in plan, plan
    else:
        with pytest.raises(OperationalError, match="no query solution"):
            _plan_sqlite(runtime, "idx_email_message_unread", statement, parameters)
