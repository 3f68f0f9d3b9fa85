"""The outbox: queueing a draft for sending, cancelling, reading where each send stands.

State machine of an outbox row (``services/delivery.py`` moves it; ``stage`` says how far
the SMTP transaction got while ``sending``)::

    draft ──send──► queued ──claim (lease)──► sending ──250──► sent
                      ▲  (send_at: beat)        │
                      │                         ├─ 4xx / timeout / lost before the final "."
                      │                         │     └─► retrying ──due──► sending
                      │                         │           (attempts exhausted ─► failed)
                      │                         ├─ 5xx ─────────────────────────► failed
                      │                         ├─ no reply after the final "."
                      │                         │     └─► needs_reconciliation ─(found)─► sent
                      │                         └─ lease expired (worker died):
                      │                               stage connecting ─► retrying
                      │                               stage data_end   ─► needs_reconciliation
    queued | retrying | needs_reconciliation ──cancel──► cancelled (the draft is editable again)
    sent ──a synced bounce: every recipient failed──► bounced (services/sync/bounces.py)

A message is sent at most once: the row is claimed with an atomic UPDATE before any SMTP,
the claim is checked again (a fence) right before the final "." of DATA, and a row whose
fate after that "." is unknown is never resent automatically — only a person may, by
cancelling and sending the draft again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.errors import (
    ConflictError,
    FeatureDisabledError,
    ValidationError,
)
from email_service.mail.mime.build import (
    FilePart,
    Mailbox,
    Outgoing,
    build_message,
    envelope_address,
    envelope_recipients,
    new_message_id,
)
from email_service.services import gateways
from email_service.services.events import record as announce
from email_service.services.outgoing.drafts import OutboxRecord, outbox_record
from email_service.services.paging import Page, decode_cursor, encode_cursor, older_than
from email_service.services.runtime import Runtime
from email_service.store.blobs import BlobStore
from email_service.store.change_log import ChangeType, Op, record
from email_service.store.db import changed, table_of
from email_service.store.models import Account, ComposeAttachment, Draft, Outbox, utcnow
from email_service.store.states import CANCELLABLE_OUTBOX_STATES, OutboxState
from email_service.store.tenancy import not_found, tenant_row

# The public task name (jobs/tasks.py registers it under this name).
SEND_TASK = "send_email"


# Statements of every send request, built once (see store.db.changed).
# The send a tenant's Idempotency-Key names.
_KEYED = (Outbox.tenant_id == bindparam("tenant"), Outbox.idempotency_key == bindparam("key"))
_BY_KEY = select(Outbox).where(*_KEYED)
# The draft, its account, whether it has uploads to read (most have none), and the send
# the request's Idempotency-Key already names, if any: one round trip.
_DRAFT_AND_ACCOUNT = (
    select(
        Draft,
        Account,
        select(ComposeAttachment.id)
        .where(ComposeAttachment.draft_id == Draft.id)
        .exists()
        .label("has_uploads"),
        select(Outbox.id).where(*_KEYED).scalar_subquery().label("keyed"),
    )
    .join(Account, Account.id == Draft.account_id)
    .where(Draft.tenant_id == bindparam("tenant"), Draft.id == bindparam("draft"))
)
# The account a new message sends from (the one named, else the tenant's first) and the
# send the request's Idempotency-Key already names, if any: one round trip.
_KEYED_ID = select(Outbox.id).where(*_KEYED).scalar_subquery().label("keyed")
_FIRST_ACCOUNT_AND_KEYED = (
    select(Account, _KEYED_ID)
    .where(Account.tenant_id == bindparam("tenant"))
    .order_by(Account.created_at, Account.id)
    .limit(1)
)
_NAMED_ACCOUNT_AND_KEYED = select(Account, _KEYED_ID).where(
    Account.tenant_id == bindparam("tenant"), Account.id == bindparam("account")
)
_DRAFTS = table_of(Draft)
_CLAIM_DRAFT = (
    update(_DRAFTS)
    .where(_DRAFTS.c.id == bindparam("draft"), _DRAFTS.c.outbox_id.is_(None))
    .values(outbox_id=bindparam("outbox"))
)


@dataclass(frozen=True)
class Queued:
    """The answer to a send request: the outbox row, and whether this request made it."""

    record: OutboxRecord
    created: bool


def require_send_enabled(runtime: Runtime) -> None:
    """FeatureDisabledError unless ENABLE_SMTP_SEND."""
    if not runtime.settings.enable_smtp_send:
        raise FeatureDisabledError("sending is disabled (ENABLE_SMTP_SEND=false)")


def _boxes(values: list[dict[str, str]]) -> list[Mailbox]:
    return [Mailbox(v["email"], v.get("name") or "") for v in values]


def outgoing(
    session: Session,
    blobs: BlobStore,
    draft: Draft,
    account: Account,
    uploads: Iterable[ComposeAttachment] | None = None,
) -> Outgoing:
    """What the draft will send, with a new Message-ID under the account's domain
    (``uploads``: its attachments, read here unless the caller knows them)."""
    if uploads is None:
        uploads = session.scalars(
            select(ComposeAttachment)
            .where(ComposeAttachment.draft_id == draft.id)
            .order_by(ComposeAttachment.created_at, ComposeAttachment.id)
        )
    files = [
        FilePart(u.filename, u.content_type, blobs.get(u.blob_sha256), u.content_id, u.inline)
        for u in uploads
    ]
    forwarded = blobs.get(draft.forward_blob_sha256) if draft.forward_blob_sha256 else None
    return Outgoing(
        sender=Mailbox(account.email, account.display_name or ""),
        to=_boxes(draft.to_addrs),
        cc=_boxes(draft.cc_addrs),
        bcc=_boxes(draft.bcc_addrs),
        subject=draft.subject,
        message_id=new_message_id(account.email),
        date=draft.send_at or utcnow(),
        text=draft.body_text,
        html=draft.body_html,
        attachments=files,
        in_reply_to=draft.reply_message_id,
        references=list(draft.references),
        forwarded=forwarded,
    )


def queue_send(
    runtime: Runtime, tenant_id: str, draft_id: uuid.UUID, idempotency_key: str | None = None
) -> Queued:
    """Freeze the draft into an outbox row and queue it; the same key gives the same row."""
    require_send_enabled(runtime)
    try:
        with runtime.db.session() as session:
            earlier, loaded = _earlier(session, tenant_id, draft_id, idempotency_key)
            if earlier is not None:
                return Queued(outbox_record(earlier), created=False)
            assert loaded is not None  # no earlier send: _earlier loaded the draft
            draft, account, has_uploads = loaded
            blobs = gateways.blob_store(runtime, tenant_id)
            uploads: list[ComposeAttachment] | None = None if has_uploads else []
            row = freeze(session, blobs, draft, idempotency_key, account, uploads)
            record = outbox_record(row)
    except (IntegrityError, ConflictError):  # a concurrent request won the race
        with runtime.db.session() as session:
            earlier, _ = _earlier(session, tenant_id, draft_id, idempotency_key)
        if earlier is None:
            raise
        return Queued(outbox_record(earlier), created=False)
    enqueue_if_due(runtime, tenant_id, record)
    return Queued(record, created=True)


def queue_new(
    runtime: Runtime,
    tenant_id: str,
    key: str | None,
    make: Callable[[Session, BlobStore], Outbox],
) -> Queued:
    """Queue the send ``make`` builds in one transaction; the same key gives the first row."""

    def made(session: Session, blobs: BlobStore) -> tuple[Outbox, bool]:
        earlier = _by_key(session, tenant_id, key)
        return (earlier, False) if earlier is not None else (make(session, blobs), True)

    return _queue_made(runtime, tenant_id, key, made)


def queue_from_account(
    runtime: Runtime,
    tenant_id: str,
    account_id: uuid.UUID | None,
    key: str | None,
    make: Callable[[Session, BlobStore, Account | None], Outbox],
) -> Queued:
    """:func:`queue_new` for a message from the named (else the tenant's first) account,
    which ``make`` is given: read in one round trip with the send the key names (None if
    there is no such account: ``make`` raises what it would without one)."""

    def made(session: Session, blobs: BlobStore) -> tuple[Outbox, bool]:
        params: dict[str, object] = {"tenant": tenant_id, "key": key}
        if account_id is None:
            found = session.execute(_FIRST_ACCOUNT_AND_KEYED, params).first()
        else:
            params["account"] = account_id
            found = session.execute(_NAMED_ACCOUNT_AND_KEYED, params).first()
        if found is None:  # no such account: the key may still name a send, else
            earlier = _by_key(session, tenant_id, key)  # make raises as without one
            return (earlier, False) if earlier is not None else (make(session, blobs, None), True)
        account, keyed = found
        if keyed is not None:
            return session.get_one(Outbox, keyed), False
        return make(session, blobs, account), True

    return _queue_made(runtime, tenant_id, key, made)


def _queue_made(
    runtime: Runtime,
    tenant_id: str,
    key: str | None,
    made: Callable[[Session, BlobStore], tuple[Outbox, bool]],
) -> Queued:
    """Queue the row ``made`` builds in its transaction, unless it is the earlier one the
    key names (created False; also after losing a race for the key)."""
    require_send_enabled(runtime)
    try:
        with runtime.db.session() as session:
            row, created = made(session, gateways.blob_store(runtime, tenant_id))
            record = outbox_record(row)
    except IntegrityError:  # a concurrent request with the same key won the race
        with runtime.db.session() as session:
            earlier = _by_key(session, tenant_id, key)
            if earlier is None:
                raise
            return Queued(outbox_record(earlier), created=False)
    if not created:
        return Queued(record, created=False)
    enqueue_if_due(runtime, tenant_id, record)
    return Queued(record, created=True)


def enqueue_if_due(runtime: Runtime, tenant_id: str, record: OutboxRecord) -> None:
    """Queue the send now unless ``send_at`` lies ahead (beat queues it then)."""
    if record.next_attempt_at is None or record.next_attempt_at <= utcnow():
        enqueue(runtime, tenant_id, record.draft_id)


def enqueue(runtime: Runtime, tenant_id: str, draft_id: uuid.UUID) -> None:
    """Hand ``send_email(draft_id, tenant_id)`` to the job queue (after the commit)."""
    assert runtime.queue is not None, "no job queue wired"
    runtime.queue.enqueue(SEND_TASK, uuid.uuid4().hex, draft_id=str(draft_id), tenant_id=tenant_id)


def _earlier(
    session: Session, tenant_id: str, draft_id: uuid.UUID, key: str | None
) -> tuple[Outbox | None, tuple[Draft, Account, bool] | None]:
    """The row an earlier request made (by Idempotency-Key, else the draft's active send),
    and the draft with its account (and whether it has uploads) when it had to be read
    (the caller freezes it if there is no such row)."""
    params = {"tenant": tenant_id, "draft": draft_id, "key": key}
    found = session.execute(_DRAFT_AND_ACCOUNT, params).first()
    if found is None:  # no such draft (a sent one is gone): the key may name its send
        row = _by_key(session, tenant_id, key)
        if row is None:
            raise not_found(Draft, draft_id=str(draft_id))
        return _same_draft(row, draft_id), None
    draft, account, has_uploads, keyed = found
    if keyed is not None:
        return _same_draft(session.get_one(Outbox, keyed), draft_id), None
    loaded = (draft, account, bool(has_uploads))
    if draft.outbox_id is None:
        return None, loaded
    return session.scalar(select(Outbox).where(Outbox.id == draft.outbox_id)), loaded


def _same_draft(row: Outbox, draft_id: uuid.UUID) -> Outbox:
    """The send an Idempotency-Key named, if it was for this draft (else 409)."""
    if row.draft_id != draft_id:
        raise ConflictError("this Idempotency-Key was used for another draft")
    return row


def _by_key(session: Session, tenant_id: str, key: str | None) -> Outbox | None:
    if key is None:
        return None
    return session.scalar(_BY_KEY, {"tenant": tenant_id, "key": key})


def freeze(
    session: Session,
    blobs: BlobStore,
    draft: Draft,
    key: str | None,
    account: Account | None = None,
    uploads: Iterable[ComposeAttachment] | None = None,
    row_id: uuid.UUID | None = None,
) -> Outbox:
    """Build the draft's MIME once and claim the draft for a new outbox row (``account``
    and ``uploads``: the draft's, when the caller has them; ``row_id``: the row's id, which
    a draft made in this transaction already names as its send)."""
    tenant_id = draft.tenant_id
    account = account or session.get_one(Account, draft.account_id)
    out = outgoing(session, blobs, draft, account, uploads)
    data = build_message(out)  # HeaderInjectionError / ValidationError: nothing queued
    now = utcnow()
    row = Outbox(
        id=row_id or uuid.uuid4(),
        tenant_id=tenant_id,
        account_id=account.id,
        draft_id=draft.id,
        state=OutboxState.QUEUED,
        idempotency_key=key,
        message_id=out.message_id,
        subject=out.subject,
        sender=envelope_address(account.email),
        recipients=envelope_recipients(out),
        mime_blob_sha256=blobs.put(data),
        size=len(data),
        send_at=draft.send_at,
        next_attempt_at=max(draft.send_at, now) if draft.send_at else now,
        origin_message_id=draft.in_reply_to_id or draft.forward_of_id,
        origin_flag=_origin_flag(draft),
        queued_at=now,
    )
    blobs.flush()
    session.add(row)
    session.flush()
    announce.outbox(session, tenant_id, account.id, row.id, row.state, Op.CREATED)
    if draft.outbox_id == row.id:  # made queued in this transaction: announced as created
        return row
    _claim_draft(session, draft.id, row.id)
    announce.draft(session, draft, Op.UPDATED)  # queued now: its state and outbox_id
    return row


def _origin_flag(draft: Draft) -> str | None:
    """The flag the original gets once sent: RFC 9051 §2.3.2 \\Answered, RFC 5788 $Forwarded."""
    if draft.in_reply_to_id:
        return "\\Answered"
    return "$Forwarded" if draft.forward_of_id else None


def _claim_draft(session: Session, draft_id: uuid.UUID, outbox_id: uuid.UUID) -> None:
    """Point the draft at its send, atomically: a second concurrent send loses (409)."""
    if not changed(session, _CLAIM_DRAFT, {"draft": draft_id, "outbox": outbox_id}):
        raise ConflictError("the draft is already queued for sending")


def cancel(runtime: Runtime, tenant_id: str, outbox_id: uuid.UUID) -> OutboxRecord:
    """Stop a send that has not started (or awaits reconciliation); the draft is editable."""
    with runtime.db.session() as session:
        row = get_row(session, tenant_id, outbox_id)
        cancelled = (
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.state.in_(CANCELLABLE_OUTBOX_STATES))
            .values(state=OutboxState.CANCELLED, next_attempt_at=None, updated_at=utcnow())
        )
        if not changed(session, cancelled):
            session.refresh(row)
            raise ConflictError(f"cannot cancel a message that is {row.state}", state=row.state)
        release_draft(session, row)
        session.refresh(row)
        announce.outbox(session, row.tenant_id, row.account_id, row.id, row.state)
        return outbox_record(row)


def release_draft(session: Session, row: Outbox) -> None:
    """Make the draft editable again after its send ended without being sent."""
    released = session.scalar(
        update(Draft)
        .where(Draft.id == row.draft_id, Draft.outbox_id == row.id)
        .values(outbox_id=None)
        .returning(Draft.id)
        .execution_options(synchronize_session=False)
    )
    if released is not None:
        record(session, row.tenant_id, row.account_id, ChangeType.DRAFT, released, Op.UPDATED)


def get_row(session: Session, tenant_id: str, outbox_id: uuid.UUID) -> Outbox:
    """One outbox row of this tenant, or NotFoundError."""
    return tenant_row(session, Outbox, tenant_id, outbox_id, outbox_id=str(outbox_id))


def get_outbox(session: Session, tenant_id: str, outbox_id: uuid.UUID) -> OutboxRecord:
    """One send and where it stands."""
    return outbox_record(get_row(session, tenant_id, outbox_id))


def list_outbox(
    session: Session,
    tenant_id: str,
    limit: int,
    cursor: str | None = None,
    state: str | None = None,
) -> Page[OutboxRecord]:
    """This tenant's sends, newest first, optionally in one state."""
    query = select(Outbox).where(Outbox.tenant_id == tenant_id)
    if state is not None:
        query = query.where(Outbox.state == state)
    if cursor:
        at, key = decode_cursor(cursor)
        after = _cursor_uuid(key)
        query = query.where(older_than(Outbox.created_at, Outbox.id, at, after))
    rows = list(
        session.scalars(query.order_by(Outbox.created_at.desc(), Outbox.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, str(rows[-1].id)) if more else None
    return Page([outbox_record(r) for r in rows], next_cursor)


def _cursor_uuid(key: str) -> uuid.UUID:
    try:
        return uuid.UUID(key)
    except ValueError:
        raise ValidationError("invalid cursor", field="cursor") from None
