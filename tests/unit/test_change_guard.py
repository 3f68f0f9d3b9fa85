"""The change-log check (tests/support/change_guard.py) on an in-process SQLite database:
it reports an application write that commits without its change-log row, and is quiet
for an announced one, a rolled-back one, bookkeeping columns and the test's own writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from email_service.services.events import record as announce
from email_service.services.sync import state as sync_state
from email_service.store.db import make_engine
from email_service.store.models import Account, Base, SyncState
from tests.support import change_guard

TENANT = "tenant-a"


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'guard.db'}")
    Base.metadata.create_all(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def account(sessions: sessionmaker[Session]) -> uuid.UUID:
    """An account and its sync status, written by the test (not checked)."""
    row = Account(
        tenant_id=TENANT,
        email="a@example.test",
        username="a@example.test",
        imap_host="127.0.0.1",
        imap_port=143,
        imap_security="none",
        smtp_host="127.0.0.1",
        smtp_port=25,
        smtp_security="none",
    )
    with sessions.begin() as session:
        session.add(row)
        session.flush()
        session.add(SyncState(account_id=row.id, tenant_id=TENANT, state="idle", progress={}))
    return row.id


def test_an_announced_change_passes_and_the_tests_own_writes_are_not_checked(
    sessions: sessionmaker[Session], account: uuid.UUID
) -> None:
    with change_guard.watching() as guard:
        with sessions.begin() as session:
            sync_state.mark_queued(session, TENANT, account, "job-1")
        with sessions.begin() as session:  # the test's own write
            session.execute(update(SyncState).values(state="ok"))
        assert guard.take() == []


def test_an_unannounced_change_is_reported_with_where_it_was_made(
    sessions: sessionmaker[Session], account: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(announce, "sync_changed", lambda *args, **kwargs: None)
    with change_guard.watching() as guard:
        with sessions.begin() as session:
            sync_state.mark_queued(session, TENANT, account, "job-1")
        (found,) = guard.take()
    assert found.startswith("update account_sync of job_id, queued_at, state at ")
    assert "services/sync/state.py:" in found and found.endswith(f"no sync row for {account}")


def test_a_rolled_back_change_and_bookkeeping_columns_need_no_row(
    sessions: sessionmaker[Session], account: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(announce, "sync_changed", lambda *args, **kwargs: None)
    with change_guard.watching() as guard:
        with pytest.raises(RuntimeError), sessions.begin() as session:
            sync_state.mark_queued(session, TENANT, account, "job-1")
            session.flush()
            raise RuntimeError("rolled back")
        with sessions.begin() as session:  # the lock only
            assert sync_state.start(session, TENANT, account, "owner")
        assert [v for v in guard.take() if "lock" not in v] == []
        with sessions.begin() as session:
            sync_state.release(session, account, "owner", "ok")  # announced: sync.updated
        assert guard.take() == []
