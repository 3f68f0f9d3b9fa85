"""PostgreSQL list reads without SQLAlchemy's per-statement work (store/reader.py): the same
rows as a Core connection gives, in the caller's row-level-security scope (never another
tenant's, never none), one statement per round trip in autocommit, and a connection that
failed is dropped from the pool, not handed to the next request."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, timedelta

import psycopg
import pytest
from sqlalchemy import func, select, text

from email_service.services import accounts as account_service
from email_service.services import messages as message_service
from email_service.services.runtime import Runtime
from email_service.store import change_log, rls, scope
from email_service.store import db as db_module
from email_service.store.change_log import ChangeType, Op
from email_service.store.models import Account, Folder, Message
from email_service.store.models import utcnow as now
from email_service.store.reader import Reader
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.postgres import PG_ADMIN_URL

PG = pytest.mark.parametrize("backend", ["postgres"])
WHO = select(func.current_user(), func.current_setting("app.tenant_id", True))


def _mailbox(runtime: Runtime, tenant: str, count: int) -> uuid.UUID:
    """An account with a folder of ``count`` messages (some received at the same instant)."""
    fields = account_service.AccountFields(
        email=f"{tenant}-{uuid.uuid4().hex[:6]}@example.org", password="pw", imap_host="127.0.0.1"
    )
    with runtime.db.session() as session:
        account = account_service.create_account(
            session, tenant, fields, runtime.vault, runtime.hosts
        )
        folder = Folder(tenant_id=tenant, account_id=account.id, raw_name="INBOX", name="INBOX")
        session.add(folder)
        session.flush()
        start = now()
        messages = []
        for uid in range(1, count + 1):
            messages.append(
                Message(
                    tenant_id=tenant,
                    account_id=account.id,
                    folder_id=folder.id,
                    uid=uid,
                    uidvalidity=1,
                    received_date=start - timedelta(minutes=uid // 2),
                    blob_sha256=f"{uid:064x}",
                    subject=f"message {uid}",
                    from_email="a@example.org" if uid % 2 else None,
                    to_addrs=[{"name": "B", "email": "b@example.org"}],
                    flags=["\\Seen"] if uid % 3 else [],
                    seen=bool(uid % 3),
                )
            )
        session.add_all(messages)
        session.flush()
        ids = [m.id for m in messages]
        change_log.record(session, tenant, account.id, ChangeType.FOLDER, folder.id, Op.CREATED)
        change_log.record_many(session, tenant, account.id, ChangeType.MESSAGE, ids, Op.CREATED)
        return folder.id


def _reader(runtime: Runtime) -> Reader:
    reader = runtime.db.reader
    assert reader is not None
    return reader


@PG
def test_pages_are_the_rows_a_core_connection_reads(runtime: Runtime) -> None:
    folder = _mailbox(runtime, TENANT_A, 9)
    _mailbox(runtime, TENANT_B, 3)
    reader = _reader(runtime)
    flt = message_service.MessageFilter(folder_id=folder)
    seen = message_service.MessageFilter(folder_id=folder, seen=True)
    with scope.tenant_scope(TENANT_A), runtime.db._autocommit_engine.connect() as core:
        for source in (reader, core):
            assert account_service.list_accounts(source, TENANT_A, 5).items  # warm both
        pages = []
        for source in (reader, core):
            first = message_service.list_messages(source, TENANT_A, flt, 4)
            after = message_service.list_messages(source, TENANT_A, flt, 4, first.next_cursor)
            flagged = message_service.list_messages(source, TENANT_A, seen, 50)
            listed = account_service.list_accounts(source, TENANT_A, 50)
            pages.append(
                [
                    [tuple(r) for r in first.items],
                    first.next_cursor,
                    [tuple(r) for r in after.items],
                    [tuple(r) for r in flagged.items],
                    listed.items,
                ]
            )
    assert pages[0] == pages[1]
    first_items = pages[0][0]
    assert len(first_items) == 4 and pages[0][1] is not None and len(pages[0][2]) == 4
    assert {len(pages[0][3])} == {6}  # seen: 6 of 9
    received = pages[0][0][0][8]
    assert received.utcoffset() == timedelta(0)  # aware UTC, as UTCDateTime reads it


@PG
def test_a_read_runs_as_the_callers_scope_and_never_without_one(runtime: Runtime) -> None:
    _mailbox(runtime, TENANT_A, 1)
    _mailbox(runtime, TENANT_B, 1)
    reader = _reader(runtime)
    unfiltered = select(Account.tenant_id)
    for tenant in (TENANT_A, TENANT_B, TENANT_A):
        with scope.tenant_scope(tenant):
            assert reader.execute(WHO, {}) == [(rls.APP_ROLE, tenant)]
            assert {row.tenant_id for row in reader.execute(unfiltered, {})} == {tenant}
    with scope.no_scope(), pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute(unfiltered, {})
    with scope.no_scope(), runtime.db.reading() as session:  # the connection is still good
        assert session.execute(text("SELECT 1")).scalar_one() == 1


@PG
def test_reads_are_autocommit_and_leave_sessions_transactional(runtime: Runtime) -> None:
    reader = _reader(runtime)
    runtime.db.dispose()
    times = select(func.transaction_timestamp(), func.pg_sleep(0.01))
    with scope.tenant_scope(TENANT_A):
        first, second = (reader.execute(times, {})[0][0] for _ in range(2))
        assert first < second
        with runtime.db.session() as session:  # the same pooled connection, after the reader
            ask = text("SELECT transaction_timestamp(), pg_sleep(0.01)")
            one, two = (session.execute(ask).first()[0] for _ in range(2))  # type: ignore[index]
        assert one == two
        for _ in range(3):
            reader.execute(WHO, {})
    assert runtime.db.engine.pool.checkedin() == 1  # type: ignore[attr-defined]


@PG
def test_a_connection_that_failed_is_not_handed_out_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = _reader(runtime)
    runtime.db.dispose()
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 3600.0)  # no ping: the read meets it
    pid = select(func.pg_backend_pid())
    with scope.tenant_scope(TENANT_A):
        first = reader.execute(pid, {})[0][0]
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        with contextlib.suppress(psycopg.OperationalError):
            reader.execute(pid, {})  # the killed backend: an error, once
        assert reader.execute(pid, {})[0][0] != first


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_reads_through_core(runtime: Runtime) -> None:
    assert runtime.db.reader is None
    with runtime.db.rows() as conn:
        assert not isinstance(conn, Reader)


@PG
def test_timestamps_come_back_in_utc_whatever_the_server_zone(runtime: Runtime) -> None:
    with runtime.db.engine.connect() as conn:
        assert conn.execute(text("SHOW TimeZone")).scalar_one() == "UTC"
    for engine in runtime.db.engines:  # the search pool's connections too
        pooled = engine.raw_connection()
        try:
            (loaded,) = pooled.driver_connection.execute("SELECT now()").fetchone()
        finally:
            pooled.close()
        assert loaded.tzinfo is UTC  # as psycopg loads it: nothing left to convert
