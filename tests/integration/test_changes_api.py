"""/api/changes on both backends: states, collapsing, paging, retention, tenancy."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text, update
from sqlalchemy.exc import DataError

from email_service.services.events import feed
from email_service.store import change_log, scope
from email_service.store.change_log import ChangeType, Op
from email_service.store.models import Change, utcnow
from tests.conftest import TENANT_A, TENANT_B


def _account(client: Any, headers: dict[str, str], email: str) -> str:
    response = client.post(
        "/api/accounts", json={"email": email, "password": "pw-123456"}, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def _changes(client: Any, headers: dict[str, str], **query: Any) -> Any:
    return client.get("/api/changes", query_string=query, headers=headers)


def test_start_then_created_updated_destroyed(client: Any, as_tenant: Any) -> None:
    a = as_tenant(TENANT_A)
    start = _changes(client, a).get_json()
    assert start["old_state"] is None and not start["has_more_changes"]
    assert all(
        v == {"created": [], "updated": [], "destroyed": []} for v in start["changes"].values()
    )
    one = _account(client, a, "one@example.com")
    two = _account(client, a, "two@example.com")
    body = _changes(client, a, since=start["new_state"]).get_json()
    assert sorted(body["changes"]["account"]["created"]) == sorted([one, two])
    assert body["new_state"] != start["new_state"] and not body["has_more_changes"]
    middle = body["new_state"]
    client.put(f"/api/accounts/{one}", json={"display_name": "One"}, headers=a)
    client.delete(f"/api/accounts/{two}", headers=a)
    later = _changes(client, a, since=middle).get_json()["changes"]["account"]
    assert later == {"created": [], "updated": [one], "destroyed": [two]}
    # created and destroyed in the same window: left out (RFC 8620 §5.2)
    whole = _changes(client, a, since=start["new_state"]).get_json()["changes"]["account"]
    assert whole == {"created": [one], "updated": [], "destroyed": []}


def test_other_tenant_sees_nothing(client: Any, as_tenant: Any) -> None:
    a, b = as_tenant(TENANT_A), as_tenant(TENANT_B)
    start_b = _changes(client, b).get_json()["new_state"]
    start_a = _changes(client, a).get_json()["new_state"]
    mine = _account(client, a, "mine@example.com")
    body_b = _changes(client, b, since=start_b).get_json()
    assert mine not in str(body_b)
    assert body_b["changes"]["account"]["created"] == []
    body_a = _changes(client, a, since=start_a).get_json()
    assert body_a["changes"]["account"]["created"] == [mine]


def test_paging_and_account_filter(client: Any, as_tenant: Any) -> None:
    a = as_tenant(TENANT_A)
    start = _changes(client, a).get_json()["new_state"]
    ids = [_account(client, a, f"p{i}@example.com") for i in range(5)]
    seen: list[str] = []
    state, pages = start, 0
    while True:
        body = _changes(client, a, since=state, limit=2).get_json()
        seen += body["changes"]["account"]["created"]
        state, pages = body["new_state"], pages + 1
        if not body["has_more_changes"]:
            break
    assert seen == ids and pages == 3
    only = _changes(client, a, since=start, account_id=ids[3]).get_json()
    assert only["changes"]["account"]["created"] == [ids[3]]


def test_state_older_than_retention_cannot_be_calculated(
    client: Any, as_tenant: Any, runtime: Any
) -> None:
    a = as_tenant(TENANT_A)
    start = _changes(client, a).get_json()["new_state"]
    _account(client, a, "old@example.com")
    with runtime.db.session() as session:
        session.execute(update(Change).values(created_at=utcnow() - timedelta(days=30)))
    with runtime.db.session() as session:
        assert feed.prune(session, timedelta(days=7)) == 1
    gone = _changes(client, a, since=start)
    assert gone.status_code == 410
    assert gone.mimetype == "application/problem+json"
    assert gone.get_json()["code"] == "cannot_calculate_changes"
    fresh = _changes(client, a).get_json()["new_state"]
    assert _changes(client, a, since=fresh).status_code == 200


def test_bad_and_future_states(client: Any, as_tenant: Any) -> None:
    a = as_tenant(TENANT_A)
    bad = _changes(client, a, since="nonsense")
    assert bad.status_code == 400 and bad.get_json()["code"] == "bad_request"
    future = _changes(client, a, since=feed.encode_state(10**9))
    assert future.status_code == 410
    assert _changes(client, {}, since="x").status_code == 401


def test_rolled_back_changes_are_never_written(runtime: Any) -> None:
    entity = uuid.uuid4()
    try:
        with runtime.db.session() as session:
            change_log.record(session, TENANT_A, None, ChangeType.DRAFT, entity, Op.CREATED)
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    with runtime.db.session() as session:
        change_log.record(session, TENANT_A, None, ChangeType.DRAFT, entity, Op.UPDATED)
    with runtime.db.reading() as session:
        rows = change_log.read(session, TENANT_A, 0, 10)
    assert [(r.entity_id, r.op) for r in rows] == [(str(entity), "updated")]


def test_a_tenants_changes_are_numbered_only_once_its_lock_is_held(runtime: Any) -> None:
    """The tenant's rows commit in ``seq`` order: a transaction whose lock is held
    elsewhere waits before any ``seq`` is handed out to it."""
    if runtime.db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is no lock to wait for")
    key = change_log._tenant_lock_key(TENANT_A)
    entity = uuid.uuid4()

    def commit_a_change() -> None:
        with scope.tenant_scope(TENANT_A), runtime.db.session() as session:
            change_log.record(session, TENANT_A, None, ChangeType.DRAFT, entity, Op.CREATED)

    with runtime.db.engine.connect() as holder:
        sequence = holder.scalar(text("SELECT pg_get_serial_sequence('change_log', 'seq')"))
        # the last number handed out (0 before the first: last_value is 1 until then)
        last = text(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {sequence}")
        before = holder.scalar(last)
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        holder.commit()
        writer = threading.Thread(target=commit_a_change)
        writer.start()
        writer.join(1.0)
        assert writer.is_alive()  # waiting for the lock ...
        assert holder.scalar(last) == before  # ... with no number taken
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        holder.commit()
        writer.join(10)
    assert not writer.is_alive()
    with scope.tenant_scope(TENANT_A), runtime.db.reading() as session:
        rows = [r for r in change_log.read(session, TENANT_A, 0, 100) if r.entity_id == str(entity)]
    assert len(rows) == 1 and rows[0].seq > before


def test_a_tenants_lock_is_free_again_when_its_insert_returns(runtime: Any) -> None:
    """The INSERT that takes the tenant's lock reaches the server with the COMMIT: by the
    time it answers, the lock is released (it is never held while this process runs)."""
    if runtime.db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is no lock to hold")
    key = change_log._tenant_lock_key(TENANT_A)
    free: list[bool] = []

    def answered(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO change_log"):
            with runtime.db.engine.connect() as other:
                free.append(other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}))
                other.rollback()

    event.listen(runtime.db.engine, "after_cursor_execute", answered)
    try:
        with scope.tenant_scope(TENANT_A), runtime.db.session() as session:
            change_log.record(session, TENANT_A, None, ChangeType.DRAFT, uuid.uuid4(), Op.CREATED)
    finally:
        event.remove(runtime.db.engine, "after_cursor_execute", answered)
    assert free == [True]


def test_a_change_that_cannot_be_written_rolls_its_transaction_back(runtime: Any) -> None:
    """An INSERT failing at commit (sent with the COMMIT) raises as SQLAlchemy's error, commits
    none of the transaction's changes, and leaves the pooled connection usable."""
    if runtime.db.dialect != "postgresql":
        pytest.skip("SQLite: the INSERT runs on its own, before the commit")
    entity = uuid.uuid4()

    def commit(op: Op, account_id: Any = None) -> None:
        with scope.tenant_scope(TENANT_A), runtime.db.session() as session:
            change_log.record(session, TENANT_A, None, ChangeType.DRAFT, entity, op)
            if account_id is not None:
                change_log.record(session, TENANT_A, account_id, ChangeType.DRAFT, entity, op)

    commit(Op.CREATED)
    with pytest.raises(DataError):  # not a uuid: the array cast fails on the server
        commit(Op.UPDATED, account_id="not-a-uuid")
    commit(Op.DESTROYED)
    with scope.tenant_scope(TENANT_A), runtime.db.reading() as session:
        ops = [
            r.op for r in change_log.read(session, TENANT_A, 0, 100) if r.entity_id == str(entity)
        ]
    assert ops == ["created", "destroyed"]
