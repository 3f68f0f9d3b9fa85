"""Steps of a send shared by the delivery and reconciliation paths: the claimed job, a
conditional write of the result, and what follows a delivery (draft gone, original flagged,
Sent copy)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from email_service.errors import EmailServiceError, RemoteTemporaryError
from email_service.services import gateways
from email_service.services.events import record as announce
from email_service.services.outgoing import draft_copy, outbox, sent_copy
from email_service.services.runtime import Runtime
from email_service.store.change_log import ChangeType, Op, log_params, logged, record
from email_service.store.db import changed, table_of
from email_service.store.models import Account, Draft, Outbox, utcnow
from email_service.store.reader import Reader
from email_service.store.states import OutboxState, SentCopyState

# A Sent copy that keeps failing for this long is reported failed.
SENT_COPY_GIVE_UP = timedelta(days=1)


# The sent draft's removal (Core, built once): whether a Drafts copy was started.
_DRAFTS = table_of(Draft)
_OUTBOX = table_of(Outbox)
_DROP_DRAFT = (
    delete(_DRAFTS)
    .where(_DRAFTS.c.id == bindparam("draft"), _DRAFTS.c.outbox_id == bindparam("outbox"))
    .returning(_DRAFTS.c.imap_copy_started)
)


@dataclass(frozen=True)
class SendOutcome:
    """What one run did; ``retry_in`` asks the queue to run it again after that many seconds."""

    state: str
    retry_in: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Job:
    """A claimed row and what sending it needs, read in the claim's transaction."""

    row: Outbox
    account: Account
    login: gateways.Login
    origin: sent_copy.Origin | None


def job_for(session: Session, runtime: Runtime, row: Outbox, account: Account | None = None) -> Job:
    """The row with its account (read unless given), IMAP login and the original to flag."""
    return Job(row, *sent_copy.context(session, runtime, row, account))


def smtp_answer(exc: EmailServiceError | None) -> dict[str, Any]:
    """The server's code and text from an SMTP error, as outbox columns."""
    if exc is None or "smtp_code" not in exc.details:
        return {}
    return {
        "last_smtp_code": exc.details["smtp_code"],
        "last_smtp_reply": exc.details["smtp_reply"],
    }


def settle(runtime: Runtime, row: Outbox, owner: str | None, **values: Any) -> bool:
    """Write a result, if the row is still mine (``owner``) or unclaimed (None)."""
    statement = update(Outbox).where(Outbox.id == row.id)
    if owner is not None:
        statement = statement.where(
            Outbox.lease_owner == owner,
            Outbox.state.in_((OutboxState.SENDING, OutboxState.NEEDS_RECONCILIATION)),
        )
    values.setdefault("updated_at", utcnow())
    state = values.get("state", "")
    released = state in (OutboxState.FAILED, OutboxState.CANCELLED)
    if runtime.db.reader is not None and not released:  # PostgreSQL
        return _settle_logged(runtime.db.reader, row, owner, state, values)
    with runtime.db.session() as session:
        done = changed(session, statement.values(**values))
        if done and released:
            outbox.release_draft(session, row)
        if done:  # a new state, or only its Sent copy, error or checks: all shown
            announce.outbox(session, row.tenant_id, row.account_id, row.id, state)
        return done


def _settle_logged(
    reader: Reader, row: Outbox, owner: str | None, state: str, values: dict[str, Any]
) -> bool:
    """:func:`settle` on PostgreSQL when no draft is released: the write and its change-log
    row in one prepared statement, alone (no BEGIN, no COMMIT)."""
    written = _settle_statement(owner is not None, tuple(sorted(values)), state)
    params = {f"set_{name}": value for name, value in values.items()}
    params.update(row_id=row.id, owner=owner, **log_params(row.tenant_id))
    return bool(reader.execute(written, params).one()[0] == 1)


@functools.cache
def _settle_statement(mine: bool, columns: tuple[str, ...], state: str) -> Select[Any]:
    """:func:`_settle_logged`'s statement, built once for each kind of result."""
    statement = update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id"))
    if mine:
        statement = statement.where(
            _OUTBOX.c.lease_owner == bindparam("owner"),
            or_(  # not IN: one SQL text for the Reader's prepared statement
                _OUTBOX.c.state == OutboxState.SENDING,
                _OUTBOX.c.state == OutboxState.NEEDS_RECONCILIATION,
            ),
        )
    settled = (
        statement.values({name: bindparam(f"set_{name}") for name in columns})
        .returning(_OUTBOX.c.id, _OUTBOX.c.account_id)
        .cte()
    )
    detail = announce.SEND_DETAILS.get(state)
    return select(select(func.count()).select_from(settled).scalar_subquery()).add_cte(
        logged([(settled, ChangeType.OUTBOX, Op.UPDATED, detail)])
    )


def after_sent(session: Session, row: Outbox) -> bool:
    """A sent draft is gone (as in every mail client); the original gets its flag here.

    True if a copy of the draft may be in a Drafts folder: a save job marked it before
    appending (``draft_copy``), or the draft was no longer there to ask. A message sent as
    the client built it had no draft (``Outbox.without_draft``) and so no copy.
    """
    announce.outbox(session, row.tenant_id, row.account_id, row.id, "sent")
    if row.without_draft:
        sent_copy.flag_locally(session, row)
        return False
    marked = session.scalar(_DROP_DRAFT, {"draft": row.draft_id, "outbox": row.id})
    if marked is not None:
        record(session, row.tenant_id, row.account_id, ChangeType.DRAFT, row.draft_id, Op.DESTROYED)
    sent_copy.flag_locally(session, row)
    return marked is None or bool(marked)


def drop_draft_copy(runtime: Runtime, row: Outbox, copy_may_exist: bool) -> None:
    """Once the row is committed ``sent``: queue the removal of the draft's Drafts copy,
    if it may have one (``after_sent`` said so).

    The draft row is gone by then, so that job removes every version. Called once per
    send, where the row becomes sent, not on every retry of the Sent copy.
    """
    if copy_may_exist:
        draft_copy.enqueue(runtime, row.tenant_id, row.draft_id, row.account_id)


def copy_to_sent(
    runtime: Runtime, job: Job, data: bytes | None = None, just_sent: bool = False
) -> None:
    """The Sent copy (and the flag on the server); pending again on temporary trouble.
    ``just_sent``: right after this run's 250 (see ``sent_copy.store_sent_copy``)."""
    row = job.row
    try:
        data = data or gateways.blob_store(runtime, row.tenant_id).get(row.mime_blob_sha256)
        copy = sent_copy.store_sent_copy(
            runtime, row, data, job.login, job.origin, just_sent=just_sent
        )
    except RemoteTemporaryError as exc:
        too_old = row.sent_at is not None and utcnow() - row.sent_at > SENT_COPY_GIVE_UP
        if too_old:
            settle(
                runtime, row, None, sent_copy=SentCopyState.FAILED, last_error=f"Sent copy: {exc}"
            )
        return
    except EmailServiceError as exc:
        settle(
            runtime,
            row,
            None,
            sent_copy=SentCopyState.FAILED,
            last_error=f"Sent copy: {exc.message}",
        )
        return
    settle(runtime, row, None, sent_copy=copy.state, sent_copy_uid=copy.uid)


def copy_to_sent_for_row(runtime: Runtime, row_id: uuid.UUID) -> None:
    """``copy_to_sent`` for a row read afresh (after reconciliation, or from beat)."""
    with runtime.db.session() as session:
        job = job_for(session, runtime, session.get_one(Outbox, row_id))
    if job.row.sent_copy == SentCopyState.PENDING:
        copy_to_sent(runtime, job)
