"""``send_email``: move one outbox row along its state machine (drawn in ``outbox.py``).

At most one delivery, whatever dies when:

1. **Claim**: ``UPDATE ... SET state='sending', stage='connecting', lease_owner=me`` where the
   row is queued/retrying and due — committed before any SMTP, so exactly one worker wins.
2. **Fence**: after the body and right before the final "." of DATA, ``UPDATE ... SET
   stage='data_end'`` where I still own the row. If that fails (someone recovered the row
   while I was slow) the connection is dropped unfinished and the server keeps nothing.
3. **Result**: written where I still own the row.

A lease that expires in ``connecting`` was lost before the server could have the message:
the row goes back to ``retrying``. One that expires in ``data_end`` may have been
delivered: ``needs_reconciliation``, looked for by Message-ID, never resent blindly.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import uuid
from datetime import timedelta

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from email_service.config import Security
from email_service.errors import (
    BlockedHostError,
    ConflictError,
    EmailServiceError,
    RemoteError,
    RemotePermanentError,
    RemoteTemporaryError,
    ValidationError,
)
from email_service.mail.smtp import SmtpAmbiguousError, SmtpReply, SmtpTarget
from email_service.mail.smtp_pool import SmtpPool
from email_service.observability import metrics
from email_service.services import gateways
from email_service.services.events import record as announce
from email_service.services.hosts import Endpoint
from email_service.services.outgoing import reconcile
from email_service.services.outgoing.send_steps import (
    Job,
    SendOutcome,
    after_sent,
    copy_to_sent,
    copy_to_sent_for_row,
    drop_draft_copy,
    job_for,
    settle,
    smtp_answer,
)
from email_service.services.runtime import Runtime
from email_service.store.change_log import ChangeType, Op, log_params, logged
from email_service.store.db import changed, table_of
from email_service.store.models import Account, Draft, Outbox, utcnow
from email_service.store.states import (
    ACTIVE_OUTBOX_STATES,
    CLAIMABLE_OUTBOX_STATES,
    OutboxState,
    SentCopyState,
)

log = logging.getLogger(__name__)
# A task for a row not due yet is dropped (the row's own retry or beat will come), unless
# it is this close: a retry timer firing early by a worker's clock.
EARLY_TOLERANCE_S = 2.0


# The statements every send runs, built once (Core, on the table): see store.db.changed.
_OUTBOX = table_of(Outbox)
# The fence: still mine and not past "connecting"? Then from here on it may be delivered.
_FENCE = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("row_id"),
        _OUTBOX.c.lease_owner == bindparam("owner"),
        _OUTBOX.c.state == OutboxState.SENDING,
        _OUTBOX.c.stage == "connecting",
    )
    # bookkeeping of this worker: the row a client reads stays as it was
    .values(
        stage="data_end", lease_expires_at=bindparam("expires"), updated_at=_OUTBOX.c.updated_at
    )
)
# The fence as a SELECT of the rows it fenced, for PostgreSQL's Reader (prepared, alone).
_FENCED = _FENCE.returning(_OUTBOX.c.id).cte("fenced")
_FENCE_COUNTED = select(func.count()).select_from(_FENCED)
# The claim: the draft's due send becomes this worker's, returned as it is now (no
# second read).
_CLAIM = (
    update(Outbox)
    .where(Outbox.tenant_id == bindparam("tenant"), Outbox.draft_id == bindparam("draft"))
    .where(Outbox.state.in_(CLAIMABLE_OUTBOX_STATES))
    .where(or_(Outbox.next_attempt_at.is_(None), Outbox.next_attempt_at <= bindparam("now")))
    .where(Outbox.attempts < bindparam("max_attempts"))
    .values(
        state=OutboxState.SENDING,
        stage="connecting",
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("expires"),
        attempts=Outbox.attempts + 1,
        updated_at=bindparam("now"),
    )
    .execution_options(synchronize_session=False)
)
# SQLite's: the row alone (its RETURNING names the updated table only), the account read
# after it, the change-log row written at the commit.
_CLAIM_ROW = _CLAIM.returning(Outbox)
# On PostgreSQL the claim is one statement with its change-log row (no BEGIN, no
# COMMIT): the UPDATE on the table returns the row, joined to its account.
_ACCOUNTS = table_of(Account)
_CLAIMED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.tenant_id == bindparam("tenant"), _OUTBOX.c.draft_id == bindparam("draft"))
    .where(_OUTBOX.c.state.in_(CLAIMABLE_OUTBOX_STATES))
    .where(or_(_OUTBOX.c.next_attempt_at.is_(None), _OUTBOX.c.next_attempt_at <= bindparam("now")))
    .where(_OUTBOX.c.attempts < bindparam("max_attempts"))
    .values(
        state=OutboxState.SENDING,
        stage="connecting",
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("expires"),
        attempts=_OUTBOX.c.attempts + 1,
        updated_at=bindparam("now"),
    )
    .returning(*_OUTBOX.c)
    .cte("claimed")
)
_CLAIM_LOGGED = select(Outbox, Account).from_statement(
    select(_CLAIMED, _ACCOUNTS)
    .join(_ACCOUNTS, _ACCOUNTS.c.id == _CLAIMED.c.account_id)
    .where(_ACCOUNTS.c.tenant_id == bindparam("tenant"))
    .add_cte(logged([(_CLAIMED, ChangeType.OUTBOX, Op.UPDATED, None)]))
)
# The server said 250: sent, if the row is still mine.
_SENT = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("row_id"),
        _OUTBOX.c.lease_owner == bindparam("owner"),
        # two comparisons rather than IN: the statement compiles to one SQL text (Reader)
        or_(
            _OUTBOX.c.state == OutboxState.SENDING,
            _OUTBOX.c.state == OutboxState.NEEDS_RECONCILIATION,
        ),
    )
    .values(
        state=OutboxState.SENT,
        stage=None,
        lease_owner=None,
        lease_expires_at=None,
        next_attempt_at=None,
        sent_at=bindparam("now"),
        sent_copy=SentCopyState.PENDING,
        last_smtp_code=bindparam("code"),
        last_smtp_reply=bindparam("reply"),
        last_error=None,
        updated_at=bindparam("now"),
    )
)

# On PostgreSQL, when no original is to be flagged: the 250 written, the sent draft
# removed (``send_steps.after_sent``) and both logged in one statement, which answers
# whether the row was still mine and whether the draft had a copy started.
_SENT_ROW = _SENT.returning(_OUTBOX.c.id, _OUTBOX.c.account_id).cte("sent")
_DRAFTS = table_of(Draft)
_DROPPED = (
    delete(_DRAFTS)
    .where(_DRAFTS.c.id == bindparam("draft"), _DRAFTS.c.outbox_id == bindparam("row_id"))
    .returning(_DRAFTS.c.id, _DRAFTS.c.account_id, _DRAFTS.c.imap_copy_started)
    .cte("dropped")
)
_SENT_LOGGED = select(
    select(func.count()).select_from(_SENT_ROW).scalar_subquery(),
    select(func.count()).select_from(_DROPPED).scalar_subquery(),
    select(_DROPPED.c.imap_copy_started).scalar_subquery(),
).add_cte(
    logged(
        [
            (_SENT_ROW, ChangeType.OUTBOX, Op.UPDATED, "sent"),
            (_DROPPED, ChangeType.DRAFT, Op.DESTROYED, None),
        ]
    )
)


class LeaseLostError(ConflictError):
    """Another worker recovered this row while we were still sending."""

    code = "lease_lost"


@functools.cache
def _pool(pid: int, size: int) -> SmtpPool:
    return SmtpPool(size)


def smtp_pool(runtime: Runtime) -> SmtpPool:
    """This process's SMTP pool (a forked worker gets its own)."""
    return _pool(os.getpid(), runtime.settings.smtp_pool_size)


def send_email(runtime: Runtime, tenant_id: str, draft_id: uuid.UUID) -> SendOutcome:
    """Advance the draft's current send one step (the ``send_email`` task)."""
    if runtime.settings.enable_smtp_send:  # the common case first: a due send, claimed
        owner = uuid.uuid4().hex
        claimed = _claim(runtime, tenant_id, draft_id, owner)
        if claimed is not None:
            return _transmit(runtime, claimed, owner)
    with runtime.db.session() as session:
        row = _current(session, tenant_id, draft_id)
    if row is None:
        return SendOutcome("none", detail="nothing to send for this draft")
    if row.state == OutboxState.SENDING:
        if not _recover_stale(runtime, row):
            return SendOutcome(OutboxState.SENDING, detail="being sent by another worker")
        with runtime.db.session() as session:
            row = session.get_one(Outbox, row.id)
    if row.state in (OutboxState.QUEUED, OutboxState.RETRYING):
        return _attempt(runtime, row)
    if row.state == OutboxState.NEEDS_RECONCILIATION:
        return reconcile.reconcile(runtime, row)
    if row.state == OutboxState.SENT and row.sent_copy == SentCopyState.PENDING:
        copy_to_sent_for_row(runtime, row.id)
    return SendOutcome(row.state)


def _current(session: Session, tenant_id: str, draft_id: uuid.UUID) -> Outbox | None:
    return session.scalar(
        select(Outbox)
        .where(Outbox.tenant_id == tenant_id, Outbox.draft_id == draft_id)
        .where(
            or_(
                Outbox.state.in_(ACTIVE_OUTBOX_STATES),
                (Outbox.state == OutboxState.SENT) & (Outbox.sent_copy == SentCopyState.PENDING),
            )
        )
        .order_by(Outbox.created_at.desc())
        .limit(1)
    )


def _recover_stale(runtime: Runtime, row: Outbox) -> bool:
    """Take back a row whose worker's lease expired (see the module docstring)."""
    now = utcnow()
    stale = update(Outbox).where(
        Outbox.id == row.id, Outbox.state == OutboxState.SENDING, Outbox.lease_expires_at < now
    )
    with runtime.db.session() as session:
        if changed(
            session,
            stale.where(Outbox.stage == "connecting").values(
                state=OutboxState.RETRYING,
                stage=None,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=now,
                last_error="the worker stopped before the end of the message; safe to resend",
            ),
        ):
            _announce(session, row, OutboxState.RETRYING)
            return True
        if changed(
            session,
            stale.where(Outbox.stage == "data_end").values(
                state=OutboxState.NEEDS_RECONCILIATION,
                last_error="the worker stopped after the end of the message was sent: "
                "the server may have it; looking for it by Message-ID, not resending",
            ),
        ):
            _announce(session, row, OutboxState.NEEDS_RECONCILIATION)
            return True
        return False


def _announce(session: Session, row: Outbox, state: str) -> None:
    announce.outbox(session, row.tenant_id, row.account_id, row.id, state)


def _attempt(runtime: Runtime, row: Outbox) -> SendOutcome:
    settings = runtime.settings
    if not settings.enable_smtp_send:
        return SendOutcome(row.state, detail="sending is disabled (ENABLE_SMTP_SEND=false)")
    if row.attempts >= settings.send_max_attempts:
        return _end(
            runtime, row, None, OutboxState.FAILED, f"gave up after {row.attempts} attempts"
        )
    early = (row.next_attempt_at - utcnow()).total_seconds() if row.next_attempt_at else 0.0
    if early > EARLY_TOLERANCE_S:  # a duplicate task: the row's own retry (or beat) comes
        return SendOutcome(row.state, detail="not due yet")
    if early > 0:  # a retry timer that fired a hair early (clocks of two hosts)
        return SendOutcome(row.state, retry_in=early)
    owner = uuid.uuid4().hex
    claimed = _claim(runtime, row.tenant_id, row.draft_id, owner)
    if claimed is None:
        return SendOutcome(row.state, detail="claimed by another worker")
    return _transmit(runtime, claimed, owner)


# A claimed row, with its account where the claim returned it (PostgreSQL).
Claimed = tuple[Outbox, Account | None]


def _claim(runtime: Runtime, tenant_id: str, draft_id: uuid.UUID, owner: str) -> Claimed | None:
    """Take the draft's due send for this worker, in one UPDATE (at most one row matches)."""
    now = utcnow()
    lease = timedelta(seconds=runtime.settings.send_lease_seconds)
    params = {
        "tenant": tenant_id,
        "draft": draft_id,
        "now": now,
        "max_attempts": runtime.settings.send_max_attempts,
        "owner": owner,
        "expires": now + lease,
    }
    if runtime.db.dialect == "postgresql":  # state and attempts changed: logged with it
        with runtime.db.autocommit() as session:
            claimed = session.execute(_CLAIM_LOGGED, {**params, **log_params(tenant_id)}).all()
        if len(claimed) != 1:
            return None
        row, account = claimed[0]
        return row, account
    with runtime.db.session() as session:
        rows = session.scalars(_CLAIM_ROW, params).all()
        if len(rows) != 1:
            return None
        _announce(session, rows[0], OutboxState.SENDING)  # state and attempts changed
        return rows[0], None


def _job(runtime: Runtime, claimed: Claimed) -> Job:
    """What sending the claimed row needs (its login, the original to flag), read after the
    claim committed: a failure here is the attempt's, settled like one over SMTP."""
    with runtime.db.reading() as session:
        return job_for(session, runtime, *claimed)


def _target(runtime: Runtime, job: Job) -> SmtpTarget:
    row, account = job.row, job.account
    password = job.login.password  # the one credential serves IMAP and SMTP
    endpoint = Endpoint(account.smtp_host, account.smtp_port, Security(account.smtp_security))
    try:
        addresses = runtime.hosts.addresses(endpoint, "smtp")  # SSRF guard, checked at each send
    except ValidationError as exc:  # the name does not resolve (now)
        raise RemoteTemporaryError(exc.message) from None
    ca_file = runtime.settings.mail_ca_file
    return SmtpTarget(
        host=endpoint.host,
        port=endpoint.port,
        security=endpoint.security.value,
        username=account.username,
        password=password,
        timeout=runtime.settings.smtp_timeout,
        connect_address=addresses[0],
        ca_file=str(ca_file) if ca_file else None,
        local_hostname=row.sender.rpartition("@")[2],
    )


def _fence(runtime: Runtime, row_id: uuid.UUID, owner: str) -> None:
    """Right before the final ".": still mine? Then from here on it may be delivered."""
    now = utcnow()
    lease = timedelta(seconds=runtime.settings.send_lease_seconds)
    # One statement, only this worker's bookkeeping (no change-log row): it commits alone.
    params = {"row_id": row_id, "owner": owner, "expires": now + lease}
    if runtime.db.reader is not None:
        fenced = runtime.db.reader.execute(_FENCE_COUNTED, params).one()[0] == 1
    else:
        with runtime.db.autocommit() as session:
            fenced = changed(session, _FENCE, params)
    if not fenced:
        raise LeaseLostError("another worker took over this message")


def _transmit(runtime: Runtime, claimed: Claimed, owner: str) -> SendOutcome:
    row = claimed[0]
    recipients = list(row.recipients)
    utf8 = any(not a.rpartition("@")[0].isascii() for a in [row.sender, *recipients])
    try:
        job = _job(runtime, claimed)
        target = _target(runtime, job)
        data = gateways.blob_store(runtime, row.tenant_id).get(row.mime_blob_sha256)
        reply = smtp_pool(runtime).send(
            target,
            row.sender,
            recipients,
            data,
            smtputf8=utf8,
            before_final_dot=lambda: _fence(runtime, row.id, owner),
            envid=str(row.id),  # a bounce names the row it is about (RFC 3461 ENVID)
        )
    except LeaseLostError:
        return SendOutcome(OutboxState.SENDING, detail="taken over by another worker")
    except SmtpAmbiguousError as exc:
        return _ambiguous(runtime, row, owner, exc)
    except (RemotePermanentError, BlockedHostError, ValidationError) as exc:
        return _end(runtime, row, owner, OutboxState.FAILED, exc.message, exc)
    except (RemoteError, EmailServiceError) as exc:  # temporary, or not known to be final
        return _temporary(runtime, row, owner, exc)
    except Exception as exc:
        _crashed(runtime, row, owner, exc)
        raise
    return _sent(runtime, job, owner, reply, data)


def _crashed(runtime: Runtime, row: Outbox, owner: str, exc: Exception) -> None:
    """A bug, not the server: settle the row by its stage instead of waiting for the lease."""
    log.exception("send crashed", extra={"outbox_id": str(row.id)})
    mine = update(Outbox).where(
        Outbox.id == row.id, Outbox.lease_owner == owner, Outbox.state == OutboxState.SENDING
    )
    error = f"internal error while sending: {type(exc).__name__}"
    with runtime.db.session() as session:
        if changed(
            session,
            mine.where(Outbox.stage == "connecting").values(
                state=OutboxState.RETRYING,
                stage=None,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=utcnow()
                + timedelta(seconds=runtime.settings.send_retry_max_seconds),
                last_error=error,
            ),
        ):
            _announce(session, row, OutboxState.RETRYING)
        elif changed(
            session, mine.values(state=OutboxState.NEEDS_RECONCILIATION, last_error=error)
        ):
            _announce(session, row, OutboxState.NEEDS_RECONCILIATION)


def _end(
    runtime: Runtime,
    row: Outbox,
    owner: str | None,
    state: str,
    error: str,
    exc: EmailServiceError | None = None,
) -> SendOutcome:
    settle(
        runtime,
        row,
        owner,
        state=state,
        stage=None,
        lease_owner=None,
        lease_expires_at=None,
        next_attempt_at=None,
        last_error=error,
        **smtp_answer(exc),
    )
    log.info("send %s: %s", state, error, extra={"outbox_id": str(row.id)})
    if state == OutboxState.FAILED:
        metrics.count_emails("failed")
    return SendOutcome(state, detail=error)


def _temporary(runtime: Runtime, row: Outbox, owner: str, exc: EmailServiceError) -> SendOutcome:
    settings = runtime.settings
    if row.attempts >= settings.send_max_attempts:
        error = f"gave up after {row.attempts} attempts: {exc.message}"
        return _end(runtime, row, owner, OutboxState.FAILED, error, exc)
    delay = min(
        settings.send_retry_max_seconds,
        settings.send_retry_base_seconds * 2 ** (row.attempts - 1),
    )
    delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter spreads retries, not a secret
    settle(
        runtime,
        row,
        owner,
        state=OutboxState.RETRYING,
        stage=None,
        lease_owner=None,
        lease_expires_at=None,
        next_attempt_at=utcnow() + timedelta(seconds=delay),
        last_error=exc.message,
        **smtp_answer(exc),
    )
    return SendOutcome(OutboxState.RETRYING, retry_in=delay, detail=exc.message)


def _ambiguous(runtime: Runtime, row: Outbox, owner: str, exc: SmtpAmbiguousError) -> SendOutcome:
    error = f"{exc.message}; the server may have the message: not resending"
    settle(
        runtime, row, owner, state=OutboxState.NEEDS_RECONCILIATION, stage=None, last_error=error
    )
    log.warning("send needs reconciliation", extra={"outbox_id": str(row.id)})
    return SendOutcome(
        OutboxState.NEEDS_RECONCILIATION,
        retry_in=runtime.settings.send_retry_base_seconds,
        detail=error,
    )


def _sent(runtime: Runtime, job: Job, owner: str, reply: SmtpReply, data: bytes) -> SendOutcome:
    row = job.row
    now = utcnow()
    params = {"row_id": row.id, "owner": owner, "now": now, "code": reply.code, "reply": reply.text}
    flags_origin = row.origin_message_id is not None and bool(row.origin_flag)
    reader = runtime.db.reader  # PostgreSQL's: a prepared statement, alone (autocommit)
    if reader is not None and not flags_origin:
        found = reader.execute(
            _SENT_LOGGED, {**params, "draft": row.draft_id, **log_params(row.tenant_id)}
        ).one()
        done = found[0] == 1
        # a draft gone already cannot be asked: it may have had a copy (see after_sent)
        copy_may_exist = not row.without_draft and (found[1] == 0 or bool(found[2]))
    else:
        with runtime.db.session() as session:
            done = changed(session, _SENT, params)
            copy_may_exist = after_sent(session, row)
    if not done:  # cannot happen while the fence holds; keep the record straight if it does
        log.error("sent, but the row was taken over", extra={"outbox_id": str(row.id)})
    drop_draft_copy(runtime, row, copy_may_exist)
    metrics.count_emails("sent")
    row.sent_at = now
    # The 250 is written first: the Sent copy (an IMAP session, seconds when the server is
    # slow) never holds back ``sent`` or widens the window a crash leaves to reconciliation.
    copy_to_sent(runtime, job, data, just_sent=True)
    return SendOutcome(OutboxState.SENT, detail=reply.text)
