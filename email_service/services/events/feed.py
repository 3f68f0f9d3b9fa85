"""``/changes`` in the manner of JMAP (RFC 8620 §5.2): what changed since a state string.

A state is an opaque string naming a position in the tenant's change log. Ids are listed
once per type: created-then-updated is created; updated-then-destroyed is destroyed; an
object created and destroyed within the window is left out (§5.2, "SHOULD").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session

from email_service.errors import BadRequestError, CannotCalculateChangesError
from email_service.store import change_log
from email_service.store.change_log import ChangeRow, ChangeType, Op
from email_service.store.models import utcnow

STATE_PREFIX = "s1."


def encode_state(seq: int) -> str:
    """The opaque state string of a change-log position."""
    return f"{STATE_PREFIX}{seq:x}"


def decode_state(state: str, name: str = "since") -> int:
    """The position a state string names; a malformed one is a 400."""
    try:
        if not state.startswith(STATE_PREFIX):
            raise ValueError(state)
        seq = int(state.removeprefix(STATE_PREFIX), 16)
    except ValueError:
        raise BadRequestError(
            "not a state string this service issued", field=name, location="query"
        ) from None
    if seq < 0:
        raise BadRequestError("not a state string this service issued", field=name)
    return seq


@dataclass
class TypeChanges:
    """Ids of one type, each in exactly one list."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)


@dataclass
class Changes:
    """The answer to ``GET /api/changes``."""

    old_state: str | None
    new_state: str
    has_more_changes: bool
    changes: dict[str, TypeChanges]


def current_state(session: Session, tenant_id: str) -> int:
    """Where a client starts: the tenant's newest change, or the pruning horizon."""
    return max(change_log.latest(session, tenant_id), change_log.horizon(session))


def check_since(session: Session, tenant_id: str, since: int, top: int | None = None) -> None:
    """Raise CannotCalculateChangesError for a state pruned away or never issued."""
    if since < change_log.horizon(session):
        raise CannotCalculateChangesError(
            "the state is older than the change log keeps; read the objects again"
        )
    if since > (current_state(session, tenant_id) if top is None else top):
        raise CannotCalculateChangesError("the state was not issued by this service")


def changes_since(
    session: Session,
    tenant_id: str,
    since: str | None,
    limit: int,
    account_id: uuid.UUID | None = None,
) -> Changes:
    """Ids created, updated and destroyed since ``since``, at most ``limit`` change rows."""
    empty = {t.value: TypeChanges() for t in ChangeType}
    if since is None:
        return Changes(None, encode_state(current_state(session, tenant_id)), False, empty)
    after = decode_state(since)
    top = current_state(session, tenant_id)  # first: every row up to it has committed
    check_since(session, tenant_id, after, top)
    rows = change_log.read(session, tenant_id, after, limit + 1, account_id, upto=top)
    more = len(rows) > limit
    rows = rows[:limit]
    new = rows[-1].seq if more else max(after, top)
    return Changes(since, encode_state(new), more, _collapse(rows, empty))


def _collapse(rows: list[ChangeRow], out: dict[str, TypeChanges]) -> dict[str, TypeChanges]:
    first: dict[tuple[str, str], str] = {}
    last: dict[tuple[str, str], str] = {}
    for row in rows:
        key = (row.type, row.entity_id)
        first.setdefault(key, row.op)
        last[key] = row.op
    for (type_, entity), op in last.items():
        created = first[(type_, entity)] == Op.CREATED.value
        bucket = out.setdefault(type_, TypeChanges())
        if op == Op.DESTROYED.value:
            if not created:
                bucket.destroyed.append(entity)
        elif created:
            bucket.created.append(entity)
        else:
            bucket.updated.append(entity)
    return out


def prune(session: Session, retention: timedelta) -> int:
    """Delete change-log rows older than ``retention``; returns how many."""
    return change_log.prune(session, utcnow() - retention)
