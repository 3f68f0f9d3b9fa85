"""The change log: a row per created/updated/destroyed object, in the changing transaction.

:func:`record` only notes a change on the session; the rows are inserted when that
session commits (``before_commit``), so nothing is announced that did not commit and
nothing committed goes unannounced. Before inserting, a PostgreSQL transaction takes a
per-tenant advisory lock held until it commits: a tenant's rows therefore become visible
in ``seq`` order, and a reader that has seen ``seq`` N of a tenant will never later find a
row of that tenant below N. (SQLite has one writer at a time, so it needs no lock.) Taking
the lock at commit, after every other write of the transaction, keeps it short and keeps
it from waiting on row locks while held. The INSERT takes the lock itself (see
``_LOCKED_INSERT``) before any of its rows is numbered, and it reaches the server in one
message with the COMMIT: the lock is held for the server's INSERT and COMMIT only, never
across a round trip to a client process that may wait for a CPU or its GIL meanwhile
(which would make every other transaction of the tenant wait behind it).
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import psycopg
from sqlalchemy import (
    CTE,
    Connection,
    Engine,
    String,
    bindparam,
    case,
    cast,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.elements import TextClause

from email_service.store.models import Change, ChangeHorizon, utcnow

_PENDING = "email_service.changes"


class ChangeType(StrEnum):
    """What kind of object changed."""

    MESSAGE = "message"
    FOLDER = "folder"
    DRAFT = "draft"
    OUTBOX = "outbox"
    ACCOUNT = "account"
    SYNC = "sync"


class Op(StrEnum):
    """What happened to it (JMAP's three lists)."""

    CREATED = "created"
    UPDATED = "updated"
    DESTROYED = "destroyed"


@dataclass(frozen=True)
class ChangeRow:
    """A committed change as readers see it."""

    seq: int
    tenant_id: str
    account_id: uuid.UUID | None
    type: str
    entity_id: str
    op: str
    detail: str | None
    created_at: datetime


def record(
    session: Session,
    tenant_id: str,
    account_id: uuid.UUID | None,
    type_: ChangeType,
    entity_id: uuid.UUID | str,
    op: Op,
    detail: str | None = None,
) -> None:
    """Note a change; it is written if, and when, this session's transaction commits."""
    pending: list[dict[str, object]] = session.info.setdefault(_PENDING, [])
    pending.append(
        {
            "tenant_id": tenant_id,
            "account_id": account_id,
            "type": type_.value,
            "entity_id": str(entity_id),
            "op": op.value,
            "detail": detail,
        }
    )


def record_many(
    session: Session,
    tenant_id: str,
    account_id: uuid.UUID | None,
    type_: ChangeType,
    entity_ids: Sequence[uuid.UUID | str],
    op: Op,
) -> None:
    """Note the same change of many objects (a batch of new or expunged messages)."""
    for entity_id in entity_ids:
        record(session, tenant_id, account_id, type_, entity_id, op)


def _tenant_lock_key(tenant_id: str) -> int:
    """A stable 31-bit key per tenant for pg_advisory_xact_lock."""
    return zlib.crc32(b"change_log:" + tenant_id.encode()) & 0x7FFFFFFF


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending: list[dict[str, object]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    now = utcnow()
    rows = [{**row, "created_at": now} for row in pending]
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(Change).execution_options(render_nulls=True), rows)
        return
    keys = sorted({_tenant_lock_key(str(row["tenant_id"])) for row in pending})
    if len(keys) == 1:  # one tenant (every scoped transaction): one statement
        connection = session.connection()
        driver = connection.connection.dbapi_connection
        if session.in_nested_transaction() or getattr(driver, "autocommit", True):
            _locked_insert(connection, rows, keys[0])  # a savepoint's: no COMMIT to join
        else:  # sent with the COMMIT, by ``_insert_and_commit``
            earlier = connection.info.pop(_AT_COMMIT, None)
            if earlier is not None:  # a session inside a longer transaction committed twice
                _locked_insert(connection, earlier[0], earlier[1])
            connection.info[_AT_COMMIT] = (rows, keys[0])
        return
    for key in keys:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    session.execute(insert(Change).execution_options(render_nulls=True), rows)


# One tenant's rows, inserted by one statement that first takes the tenant's lock (:k).
# The lock is an uncorrelated subquery in the WHERE clause: PostgreSQL runs it once, as a
# one-time filter, before the first row is produced and so before ``seq``'s default
# (``nextval``) numbers any row. The rows come as arrays: one cached statement whatever
# their number.
_LOCKED_INSERT = text(
    "INSERT INTO change_log (tenant_id, account_id, type, entity_id, op, detail, created_at)"
    " SELECT tenant_id, account_id, type, entity_id, op, detail, CAST(:now AS timestamptz)"
    " FROM unnest(CAST(:tenant_id AS varchar[]), CAST(:account_id AS uuid[]),"
    " CAST(:type AS varchar[]), CAST(:entity_id AS varchar[]), CAST(:op AS varchar[]),"
    " CAST(:detail AS varchar[])) AS pending(tenant_id, account_id, type, entity_id, op, detail)"
    " WHERE (SELECT pg_advisory_xact_lock(:k)) IS NOT NULL"
)


_LOCKED_INSERT_AND_COMMIT = text(f"{_LOCKED_INSERT.text}; COMMIT")
_ARRAYS = ("tenant_id", "account_id", "type", "entity_id", "op", "detail")


def _locked_insert(
    connection: Connection,
    rows: list[dict[str, object]],
    key: int,
    statement: TextClause = _LOCKED_INSERT,
) -> None:
    """Insert one tenant's rows, under its lock (``key``), in one statement."""
    arrays: dict[str, object] = {name: [row[name] for row in rows] for name in _ARRAYS}
    connection.execute(statement, {**arrays, "now": rows[0]["created_at"], "k": key})


# A transaction's rows to insert with its COMMIT, kept on its connection from the
# session's ``before_commit`` to the connection's ``commit``.
_AT_COMMIT = "email_service.changes_at_commit"


@event.listens_for(Engine, "commit", insert=True)
def _insert_and_commit(connection: Connection) -> None:
    """The locked INSERT and the COMMIT as one message (the simple query protocol, which
    takes several statements; the values bound by psycopg on this side), right before the
    driver's commit, which then has nothing left to do. Listed first, so that every other
    listener of the commit sees the INSERT as part of the transaction."""
    pending: tuple[list[dict[str, object]], int] | None = connection.info.pop(_AT_COMMIT, None)
    if pending is None:
        return
    rows, key = pending
    driver = connection.connection.dbapi_connection
    assert driver is not None
    cursors = driver.cursor_factory
    driver.cursor_factory = psycopg.ClientCursor
    try:
        _locked_insert(connection, rows, key, _LOCKED_INSERT_AND_COMMIT)
    finally:
        driver.cursor_factory = cursors


@event.listens_for(Engine, "begin")
@event.listens_for(Engine, "rollback")
def _forget_at_commit(connection: Connection) -> None:
    connection.info.pop(_AT_COMMIT, None)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous: SessionTransaction) -> None:
    if previous.parent is None:  # the whole transaction; a savepoint's leaves the rest
        session.info.pop(_PENDING, None)


# The columns a change-log row is made of, in the order ``logged`` selects them.
_COLUMNS = ("tenant_id", "account_id", "type", "entity_id", "op", "detail", "created_at")


def logged(changes: Sequence[tuple[CTE, ChangeType, Op, str | None]]) -> CTE:
    """The change-log rows of one PostgreSQL statement that changes rows in CTEs: for each
    ``(cte, type, op, detail)``, a row per row the CTE returns (its ``id`` and
    ``account_id``), in the order given. Parameters: ``log_tenant``, ``log_now`` and
    ``log_key`` (:func:`log_params`).

    The statement runs alone (autocommit): one round trip for the change and its rows,
    under the same rule as :func:`_write_pending`: the tenant's lock is taken before any of
    the rows is numbered, and only after every CTE has made its changes (each row's
    condition first counts all of them), so it is never held while waiting for a row lock.
    """
    done = sum(
        (select(func.count()).select_from(cte).scalar_subquery() for cte, *_ in changes),
        literal(0),
    )
    locked = case((done >= 0, func.pg_advisory_xact_lock(bindparam("log_key")).isnot(None)))
    now = bindparam("log_now", type_=Change.__table__.c.created_at.type)
    rows = [
        select(
            bindparam("log_tenant", type_=String).label("tenant_id"),
            cte.c.account_id,
            literal(type_.value, String).label("type"),
            cast(cte.c.id, String).label("entity_id"),
            literal(op.value, String).label("op"),
            literal(detail, String).label("detail"),
            now.label("created_at"),
        ).where(locked)
        for cte, type_, op, detail in changes
    ]
    source = rows[0] if len(rows) == 1 else union_all(*rows)
    return insert(Change).from_select(list(_COLUMNS), source).cte("logged")


def log_params(tenant_id: str) -> dict[str, object]:
    """The parameters of :func:`logged` for one tenant's changes, now."""
    return {"log_tenant": tenant_id, "log_now": utcnow(), "log_key": _tenant_lock_key(tenant_id)}


def pending_count(session: Session) -> int:
    """Changes noted on this session and not yet committed (tests, assertions)."""
    return len(session.info.get(_PENDING, []))


def read(
    session: Session,
    tenant_id: str,
    after: int,
    limit: int,
    account_id: uuid.UUID | None = None,
    upto: int | None = None,
) -> list[ChangeRow]:
    """A tenant's changes with ``after < seq <= upto``, oldest first, at most ``limit``."""
    query = (
        select(Change)
        .where(Change.tenant_id == tenant_id, Change.seq > after)
        .order_by(Change.seq)
        .limit(limit)
    )
    if upto is not None:
        query = query.where(Change.seq <= upto)
    if account_id is not None:
        query = query.where(Change.account_id == account_id)
    return [
        ChangeRow(
            r.seq, r.tenant_id, r.account_id, r.type, r.entity_id, r.op, r.detail, r.created_at
        )
        for r in session.scalars(query)
    ]


def latest(session: Session, tenant_id: str) -> int:
    """The tenant's highest committed ``seq`` (0 if none)."""
    value = session.scalar(select(func.max(Change.seq)).where(Change.tenant_id == tenant_id))
    return int(value or 0)


def horizon(session: Session) -> int:
    """Rows up to this ``seq`` may have been pruned: older states cannot be answered."""
    value = session.scalar(select(ChangeHorizon.pruned_through).where(ChangeHorizon.id == 1))
    return int(value or 0)


def recent_tops(session: Session, since: datetime) -> dict[str, int]:
    """Each tenant's highest ``seq`` among rows written after ``since`` (stream wake-ups)."""
    query = (
        select(Change.tenant_id, func.max(Change.seq))
        .where(Change.created_at >= since)
        .group_by(Change.tenant_id)
    )
    return {tenant: int(top) for tenant, top in session.execute(query)}


def prune(session: Session, before: datetime) -> int:
    """Delete rows written before ``before``; raise the horizon. Returns rows deleted."""
    top = session.scalar(select(func.max(Change.seq)).where(Change.created_at < before))
    if top is None:
        return 0
    deleted = session.execute(delete(Change).where(Change.seq <= top)).rowcount  # type: ignore[attr-defined]
    moved = session.execute(
        update(ChangeHorizon)
        .where(ChangeHorizon.id == 1, ChangeHorizon.pruned_through < top)
        .values(pruned_through=top)
    ).rowcount  # type: ignore[attr-defined]
    if not moved and session.get(ChangeHorizon, 1) is None:
        session.add(ChangeHorizon(id=1, pruned_through=top))
    return int(deleted)
