"""PostgreSQL row-level security, the second wall between tenants (store/rls.py): every
tenant table has it, a query that lost its tenant filter still sees one tenant, a missing
scope is an error, and the paths that cross tenants do so in their own audited scope.

The tests' own code runs in the operator scope (tests/conftest.py); the code under test
here runs inside ``scope.no_scope()`` wherever it must set its scope itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import uuid
from typing import Any

import pytest
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import ProgrammingError

from email_service.jobs import event_work, work
from email_service.services import accounts as account_service
from email_service.services import monitoring
from email_service.services.events import dispatch, stream
from email_service.services.lifecycle import deletion
from email_service.services.outgoing import reconcile
from email_service.services.push.accounts import active_accounts
from email_service.services.runtime import Runtime
from email_service.services.sync import schedule
from email_service.store import rls, scope
from email_service.store.models import Account, Base, Folder, Message, RevokedToken, ThreadLink
from email_service.store.models import utcnow as now
from email_service.store.search import pairs
from tests.conftest import TENANT_A, TENANT_B
from tests.support import aio

PG = pytest.mark.parametrize("backend", ["postgres"])


def _account(runtime: Runtime, tenant: str) -> uuid.UUID:
    fields = account_service.AccountFields(
        email=f"{tenant}@example.org", password="pw-" + tenant, imap_host="127.0.0.1"
    )
    with runtime.db.session() as session:
        return account_service.create_account(
            session, tenant, fields, runtime.vault, runtime.hosts
        ).id


def _message(
    runtime: Runtime, tenant: str, account_id: uuid.UUID, blob: str = "0" * 64
) -> uuid.UUID:
    """A folder, a message in it and the message's thread link; the message's id."""
    with runtime.db.session() as session:
        folder = Folder(tenant_id=tenant, account_id=account_id, raw_name="INBOX", name="INBOX")
        session.add(folder)
        session.flush()
        message = Message(
            tenant_id=tenant,
            account_id=account_id,
            folder_id=folder.id,
            uid=1,
            uidvalidity=1,
            received_date=now(),
            blob_sha256=blob,
        )
        session.add(message)
        session.flush()
        session.add(
            ThreadLink(account_id=account_id, message_id=message.id, link_id="x", thread_id="t")
        )
        return message.id


@pytest.fixture
def two_tenants(runtime: Runtime) -> dict[str, uuid.UUID]:
    """One account (with a message) per tenant."""
    accounts = {tenant: _account(runtime, tenant) for tenant in (TENANT_A, TENANT_B)}
    for tenant, account_id in accounts.items():
        _message(runtime, tenant, account_id)
    return accounts


@PG
def test_every_tenant_table_is_walled_and_forced(runtime: Runtime) -> None:
    """A table added later fails here until its migration calls ``rls.protect`` (or it is
    declared shared in ``rls.SHARED_TABLES``)."""
    with runtime.db.engine.connect() as conn:
        tables = set(
            conn.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        )
        flags = {
            name: (enabled, forced)
            for name, enabled, forced in conn.execute(
                text(
                    "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                    " WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
                )
            )
        }
        ask = "SELECT tablename, policyname FROM pg_policies WHERE schemaname = current_schema()"
        policies = {tuple(row) for row in conn.execute(text(ask))}
        found = set(rls.tenant_tables(conn))
    modelled = {table.name for table in Base.metadata.sorted_tables if "tenant_id" in table.c}
    assert found == modelled | pairs.TABLES and "email_message" in found
    walled = found | set(rls.CHILD_TABLES)
    assert tables - walled == rls.SHARED_TABLES
    for table in walled:
        assert flags[table] == (True, True), table
        assert {(table, "tenant_wall"), (table, "operator_all")} <= policies, table


def test_a_query_that_lost_its_tenant_filter_still_sees_one_tenant(
    client: Any, runtime: Runtime, as_tenant: Any, backend: str, monkeypatch: Any
) -> None:
    """The accounts list without ``tenant_id = :tenant_id``: SQLite (no second wall) leaks
    the other tenant's account, PostgreSQL returns the caller's only."""
    mine, theirs = _account(runtime, TENANT_A), _account(runtime, TENANT_B)
    unfiltered = account_service._RECORD.order_by(Account.created_at, Account.id).limit(
        bindparam("limit")
    )
    monkeypatch.setattr(account_service, "_FIRST_PAGE", unfiltered)
    seen: list[tuple[str, str]] = []
    listing = account_service.list_accounts

    def list_and_ask_who(session: Any, *args: Any) -> Any:
        if backend == "postgres":  # on the list's own reader (store/reader.py)
            ask = select(func.current_user(), func.current_setting("app.tenant_id"))
            seen.append(tuple(session.execute(ask).one()))
        return listing(session, *args)

    monkeypatch.setattr(account_service, "list_accounts", list_and_ask_who)
    response = client.get("/api/accounts", headers=as_tenant(TENANT_A))
    assert response.status_code == 200
    ids = {uuid.UUID(item["id"]) for item in response.get_json()["items"]}
    if backend == "sqlite":
        assert ids == {mine, theirs}  # the monkeypatch did remove the filter
    else:
        assert ids == {mine}
        assert seen == [(rls.APP_ROLE, TENANT_A)]  # the app role answered, not the superuser


def test_the_other_tenants_row_by_id_is_not_found_without_the_filter(
    client: Any, runtime: Runtime, as_tenant: Any, backend: str, monkeypatch: Any
) -> None:
    """``tenancy.owned`` (behind every ``tenant_row``) without its filter: a message by id."""
    theirs = _message(runtime, TENANT_B, _account(runtime, TENANT_B))
    monkeypatch.setattr("email_service.store.tenancy.owned", lambda model, _tenant: select(model))
    status = client.get(f"/api/messages/{theirs}", headers=as_tenant(TENANT_A)).status_code
    assert status == (200 if backend == "sqlite" else 404)
    assert client.get(f"/api/messages/{theirs}", headers=as_tenant(TENANT_B)).status_code == 200


@PG
def test_a_tenant_sees_and_writes_its_rows_only(
    runtime: Runtime, two_tenants: dict[str, uuid.UUID]
) -> None:
    with scope.tenant_scope(TENANT_A), runtime.db.session() as session:
        for model in (Account, Folder, Message):
            tenants = set(session.scalars(select(model.tenant_id)))  # type: ignore[attr-defined]
            assert tenants == {TENANT_A}, model
        links = set(session.scalars(select(ThreadLink.account_id)))  # a child: via its account
        assert links == {two_tenants[TENANT_A]}
        touched = session.execute(
            Account.__table__.update().values(display_name="x")  # type: ignore[attr-defined]
        )
        assert getattr(touched, "rowcount", None) == 1
    with (
        pytest.raises(ProgrammingError, match="row-level security"),
        scope.tenant_scope(TENANT_A),
        runtime.db.session() as session,
    ):
        session.add(
            Folder(tenant_id=TENANT_B, account_id=two_tenants[TENANT_B], raw_name="X", name="X")
        )
        session.flush()


@PG
def test_a_tenant_table_outside_any_scope_is_an_error(runtime: Runtime) -> None:
    """No scope: loud, not an empty answer. Tables of no tenant need none."""
    with scope.no_scope():
        with runtime.db.reading() as session:
            assert session.scalar(select(func.count()).select_from(RevokedToken)) == 0
        with (
            pytest.raises(ProgrammingError, match="no tenant scope"),
            runtime.db.reading() as session,
        ):
            session.scalar(select(func.count()).select_from(Account))


@PG
def test_scopes_do_not_leak_between_transactions_on_one_connection(runtime: Runtime) -> None:
    """One pooled connection, scopes in every order, autocommit reads and transactions,
    one rolled back: each begin sees exactly its own scope (a repeated one is not set
    again, and a rollback cannot undo one: it is set outside the transaction)."""
    reading, session = runtime.db.reading, runtime.db.session
    app_a, app_b, app_none = (rls.APP_ROLE, TENANT_A), (rls.APP_ROLE, TENANT_B), (rls.APP_ROLE, "")
    runs = [  # scope, sessions, (current_user, app.tenant_id), rolled back
        (scope.operator_scope("test"), reading, (rls.OPERATOR_ROLE, ""), False),
        (scope.tenant_scope(TENANT_B), session, app_b, False),
        (scope.no_scope(), reading, app_none, False),
        (scope.tenant_scope(TENANT_A), reading, app_a, False),
        (scope.tenant_scope(TENANT_A), reading, app_a, False),
        (scope.tenant_scope(TENANT_B), session, app_b, False),
        (scope.tenant_scope(TENANT_A), reading, app_a, False),
        (scope.tenant_scope(TENANT_B), session, app_b, True),
        (scope.tenant_scope(TENANT_B), reading, app_b, False),
        (scope.tenant_scope(TENANT_A), session, app_a, False),
        (scope.tenant_scope(TENANT_A), session, app_a, False),
        (scope.no_scope(), session, app_none, False),
        (scope.tenant_scope(TENANT_B), reading, app_b, False),
        (scope.owner_scope(), reading, (None, ""), False),
        (scope.tenant_scope(TENANT_A), session, app_a, False),
    ]
    runtime.db.dispose()
    ask = text("SELECT current_user, current_setting('app.tenant_id', true), session_user")
    for step, (entered, sessions, expected, roll_back) in enumerate(runs):
        seen: list[Any] = []
        with entered, contextlib.suppress(RolledBackError), sessions() as opened:
            seen = list(opened.execute(ask).one())
            if roll_back:
                raise RolledBackError
        user, tenant, login = seen
        assert (user, tenant) == (expected[0] or login, expected[1]), step
    assert runtime.db.engine.pool.checkedin() == 1  # type: ignore[attr-defined]


class RolledBackError(Exception):
    """Raised inside a session to roll it back."""


@PG
def test_operator_paths_cross_tenants_in_their_own_logged_scope(
    runtime: Runtime, two_tenants: dict[str, uuid.UUID], caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="email_service.store.scope")
    both = set(two_tenants.values())
    with scope.no_scope():
        assert {a for a, _ in schedule.due_accounts(runtime, 100)} == both
        assert {lag.account_id for lag in monitoring.sync_lags(runtime.db)} == both
        assert monitoring.sync_lag_histogram(runtime.db, (60.0,)).total == 2
        assert set(active_accounts(runtime)) == both
        assert reconcile.due_work(runtime) == []
        assert dispatch.fan_out_all(runtime.db) == 0
        assert dispatch.claim_due(runtime.db, 10, dispatch.config_from(runtime.settings)) == []
        assert event_work.prune_change_log(runtime)["deleted"] >= 0
        assert deletion.sweep(runtime).errors == []
    reasons = {r.reason for r in caplog.records if r.getMessage() == "operator database scope"}  # type: ignore[attr-defined]
    assert {
        "beat: accounts due for a periodic sync",
        "push: every tenant's accounts to watch",
    } <= reasons


@PG
def test_a_tenant_job_runs_in_its_tenant(
    runtime: Runtime, two_tenants: dict[str, uuid.UUID]
) -> None:
    """Every job function that takes a tenant_id runs in that tenant's scope."""
    takes_tenant = [
        fn
        for _name, fn in inspect.getmembers(work, inspect.isfunction)
        if fn.__module__ == work.__name__ and "tenant_id" in inspect.signature(fn).parameters
    ]
    assert len(takes_tenant) >= 7
    unscoped = [fn.__name__ for fn in takes_tenant if not hasattr(fn, "__wrapped__")]
    assert unscoped in ([], ["send_email_embedded"])  # that one calls send_email
    with scope.no_scope():
        assert work.finish_deletions(runtime, TENANT_A)["tenants_purged"] == 0


@PG
def test_deletion_of_a_tenant_in_its_scope_leaves_the_other(
    runtime: Runtime, two_tenants: dict[str, uuid.UUID]
) -> None:
    with scope.no_scope(), scope.tenant_scope(TENANT_A):
        deletion.purge_tenant(runtime, TENANT_A)
    with runtime.db.reading() as session:
        left = set(session.scalars(select(Account.tenant_id)))
        links = set(session.scalars(select(ThreadLink.account_id)))
    assert left == {TENANT_B} and links == {two_tenants[TENANT_B]}


@PG
def test_full_text_search_keeps_its_index_under_the_policy(runtime: Runtime) -> None:
    """``@@`` must be LEAKPROOF to be an index condition below a policy (store/rls.py)."""
    ask = (
        "SELECT proleakproof FROM pg_proc WHERE oid = 'ts_match_vq(tsvector,tsquery)'::regprocedure"
    )
    with runtime.db.engine.connect() as conn:
        assert conn.scalar(text(ask)) is True


@PG
def test_a_streamed_export_reads_in_its_tenant_after_the_request_ended(
    client: Any, runtime: Runtime, as_tenant: Any
) -> None:
    """The mbox is read while it is sent, after the request has left its scope."""
    account = _account(runtime, TENANT_A)
    blobs = runtime.blobs.tenant(TENANT_A)
    digest = blobs.put(b"From: a@example.org\r\nSubject: streamed\r\n\r\nhello\r\n")
    blobs.flush()
    _message(runtime, TENANT_A, account, digest)
    with scope.no_scope():
        response = client.get(f"/api/accounts/{account}/export", headers=as_tenant(TENANT_A))
        body = response.get_data()
    assert response.status_code == 200 and b"Subject: streamed" in body


@PG
def test_the_events_poll_and_a_stream_take_their_own_scopes(
    runtime: Runtime, two_tenants: dict[str, uuid.UUID]
) -> None:
    """The events server's poll crosses tenants (operator); a stream reads its tenant's."""

    async def first_event_after_the_poll() -> stream.Event:
        notifier = stream.Notifier(runtime.db, poll_seconds=0.05)
        moved = notifier.watch(TENANT_A)
        poller = asyncio.create_task(notifier.run())
        try:
            await asyncio.wait_for(moved.wait(), timeout=30)  # set by a poll that worked
            events = stream.events(runtime.db, notifier, TENANT_A, 0)
            return await anext(events)
        finally:
            poller.cancel()

    with scope.no_scope():
        assert stream.start_position(runtime.db, TENANT_A, None) > 0
        first = aio.run(first_event_after_the_poll())  # a loop of its own, in no scope
    assert json.loads(first.data)["account_id"] == str(two_tenants[TENANT_A])
