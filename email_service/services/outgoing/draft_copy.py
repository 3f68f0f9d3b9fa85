"""The copy of a draft in its account's Drafts folder (RFC 6154 ``\\Drafts``).

One job makes the server match the draft row: the current version is appended with
``\\Draft`` and ``\\Seen`` and the older versions are removed (``\\Deleted``, then UID
EXPUNGE, RFC 4315 §2.1); a draft that is gone, or now belongs to another account, loses its
copy there. Versions are found by the draft's Message-ID, which stays the same across
versions (``<draft.{id}@{domain}>``), not by a remembered UID: a run repeated or cut short
by a dead worker still leaves exactly one copy. Runs for one draft take a lock named by
the draft (a PostgreSQL advisory lock; a lock in this process on SQLite, whose embedded
queue runs in one process), so two saves of the same draft do not interleave; the draft
row itself is not locked, so editing or sending it never waits for the IMAP server. The
version saved is recorded only if the draft has not changed since it was read; a change
in between queued its own run, which comes next.
A draft queued for sending keeps its copy; the send removes it once the message is sent,
as mail clients do. A run marks the draft (``imap_copy_started``, committed) before it
first appends, and only while no send has claimed it: a send looks for a copy to remove
only in a marked draft, so a draft composed and sent at once costs no IMAP session.

A save is copied ``DRAFT_COPY_DELAY_SECONDS`` later (:func:`save_later`), as mail clients
save drafts every few seconds rather than on every keystroke: a draft composed and sent
at once is never uploaded, and a run of changes is uploaded once. The run is deferred
(``JobQueue.defer``: with Celery it waits in Redis, not in a worker, and further saves
meanwhile add none), and sending the draft cancels it (:func:`drop_save`), so a draft
composed and sent at once costs no job at all. A delayed run that still comes finds the
draft as it is by then; if the draft is gone or now in another account, the removal was
queued, undelayed, by whatever removed or moved it, so it does nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from email_service.mail.mime.build import build_message
from email_service.services import gateways
from email_service.services.imap_pool import Pooled
from email_service.services.outgoing import outbox, sent_copy
from email_service.services.runtime import Runtime
from email_service.store.db import changed
from email_service.store.models import Account, Draft

log = logging.getLogger(__name__)

DRAFT_COPY_TASK = "store_draft_copy"
# The ``reason`` of a delayed run made for a save (see save_later).
SAVED = "saved"
DRAFT_FLAGS = ("\\Draft", "\\Seen")
# Where a draft is now (account, send): what most delayed saves need to know, built once.
_WHERE_IS = select(Draft.account_id, Draft.outbox_id).where(
    Draft.tenant_id == bindparam("tenant"), Draft.id == bindparam("draft")
)
# Locks in this process for databases without advisory locks (SQLite), striped by draft.
_LOCAL_LOCKS = tuple(threading.Lock() for _ in range(64))


@dataclass(frozen=True)
class CopyResult:
    """What one run did: ``saved``, ``unchanged``, ``removed``, ``queued``, ``no_folder``,
    ``no_account`` (the account was removed, and its drafts with it), ``left`` (a
    delayed save for a draft removed or moved since: its removal was queued then), or
    ``superseded`` (the draft was queued, changed or removed while this run read it: the
    change queued its own run, or the send or removal takes over)."""

    state: str
    uid: int | None = None
    removed: int = 0

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def draft_message_id(draft_id: uuid.UUID, account_email: str) -> str:
    """The Message-ID every version of the draft's copy carries."""
    domain = account_email.rpartition("@")[2] or "localhost"
    return f"<draft.{draft_id.hex}@{domain}>"


def enqueue(runtime: Runtime, tenant_id: str, draft_id: uuid.UUID, *accounts: uuid.UUID) -> None:
    """Queue the job for each account that holds or should hold a copy (after the commit).

    The copy follows the draft, never the other way round: if the queue cannot take the
    job (broker down), the draft is saved all the same and the next save brings the copy
    up to date; the failure is logged, not returned to the client.
    """
    for account_id in dict.fromkeys(accounts):  # in order, once each
        _queue(runtime, tenant_id, draft_id, account_id, 0.0)


def save_later(
    runtime: Runtime, tenant_id: str, draft_id: uuid.UUID, account_id: uuid.UUID
) -> None:
    """Queue the copy of a saved draft, ``DRAFT_COPY_DELAY_SECONDS`` from now (deferred:
    saves meanwhile add nothing, and a send cancels it, see :func:`drop_save`)."""
    _queue(runtime, tenant_id, draft_id, account_id, runtime.settings.draft_copy_delay_seconds)


def drop_save(runtime: Runtime, draft_id: uuid.UUID, account_id: uuid.UUID) -> None:
    """The draft is queued for sending (committed): its deferred copy has nothing to do.

    A queue that cannot drop it runs it, and the run finds the draft queued or gone.
    """
    if not runtime.settings.save_drafts_to_imap or runtime.settings.draft_copy_delay_seconds <= 0:
        return
    assert runtime.queue is not None, "no job queue wired"
    try:
        runtime.queue.cancel(DRAFT_COPY_TASK, _save_key(draft_id, account_id))
    except Exception:  # any broker failure: the run comes and finds the draft queued
        log.warning("could not drop the Drafts copy of draft %s", draft_id, exc_info=True)


def _save_key(draft_id: uuid.UUID, account_id: uuid.UUID) -> str:
    return f"{draft_id}:{account_id}"


def _queue(
    runtime: Runtime, tenant_id: str, draft_id: uuid.UUID, account_id: uuid.UUID, delay: float
) -> None:
    if not runtime.settings.save_drafts_to_imap:
        return
    assert runtime.queue is not None, "no job queue wired"
    job = {"draft_id": str(draft_id), "tenant_id": tenant_id, "account_id": str(account_id)}
    try:
        if delay > 0:
            key = _save_key(draft_id, account_id)
            runtime.queue.defer(delay, DRAFT_COPY_TASK, key, **job, reason=SAVED)
        else:
            runtime.queue.enqueue(DRAFT_COPY_TASK, uuid.uuid4().hex, **job)
    except Exception:  # any broker failure: the draft itself is saved
        log.warning("could not queue the Drafts copy of draft %s", draft_id, exc_info=True)


def store_copy(
    runtime: Runtime,
    tenant_id: str,
    draft_id: uuid.UUID,
    account_id: uuid.UUID,
    reason: str = "",
) -> CopyResult:
    """Make ``account_id``'s Drafts folder hold the draft's current version, or none of it.

    A delayed run for a save (``reason`` :data:`SAVED`) leaves the folder alone when the
    draft is gone or moved: the removal is another run's, queued when that happened.
    """
    if reason == SAVED:
        settled = _settled_save(runtime, tenant_id, draft_id, account_id)
        if settled is not None:
            return settled
    with runtime.db.session() as session, _draft_lock(session, draft_id):
        account = session.scalar(
            select(Account).where(Account.tenant_id == tenant_id, Account.id == account_id)
        )
        if account is None:
            return CopyResult("no_account")
        message_id = draft_message_id(draft_id, account.email)
        login = sent_copy.imap_login(session, runtime, account)
        draft = session.scalar(
            select(Draft).where(Draft.tenant_id == tenant_id, Draft.id == draft_id)
        )
        if draft is None or draft.account_id != account_id:
            if reason == SAVED:
                return CopyResult("left")
            return _remove(runtime, login, message_id)
        if draft.outbox_id is not None:
            return CopyResult("queued")
        if draft.imap_saved_at == draft.updated_at and draft.imap_uid is not None:
            return CopyResult("unchanged", draft.imap_uid)
        out = outbox.outgoing(session, gateways.blob_store(runtime, tenant_id), draft, account)
        out = dataclasses.replace(out, message_id=message_id, date=draft.updated_at, draft=True)
        data = build_message(out)
        if not _mark_copy_started(runtime, session, draft):
            return CopyResult("superseded")
        result, uidvalidity = sent_copy.with_session(
            runtime, login, lambda pooled: _replace(pooled, message_id, data, draft)
        )
        session.execute(  # updated_at given as it is: only the copy changed, not the draft
            update(Draft)
            .where(Draft.id == draft.id, Draft.updated_at == draft.updated_at)
            .values(
                imap_uid=result.uid,
                imap_uidvalidity=uidvalidity,
                imap_saved_at=draft.updated_at,
                updated_at=draft.updated_at,
            )
            .execution_options(synchronize_session=False)
        )
        return result


def _settled_save(
    runtime: Runtime, tenant_id: str, draft_id: uuid.UUID, account_id: uuid.UUID
) -> CopyResult | None:
    """What a delayed save finds without the lock, the account or its login: the draft
    gone, moved or queued for sending (most saves of a draft sent at once). One read; the
    run under the lock reads the draft again, so this only answers earlier what it would.
    """
    with runtime.db.reading() as session:
        found = session.execute(_WHERE_IS, {"tenant": tenant_id, "draft": draft_id}).first()
    if found is None or found.account_id != account_id:
        return CopyResult("left")
    return CopyResult("queued") if found.outbox_id is not None else None


def _mark_copy_started(runtime: Runtime, session: Session, draft: Draft) -> bool:
    """Record that a copy may exist, committed before the APPEND; False if the draft was
    queued, changed or removed since it was read (nothing is appended then).

    A send reads the mark when it removes the sent draft (``send_steps.after_sent``) and
    looks for a copy only if it is set. The mark and the send's claim both require
    ``outbox_id`` to be empty, so one of them sees the other: a draft claimed first gets
    no copy, a draft marked first gets its copy removed. On PostgreSQL the mark commits in
    its own transaction, as this run's keeps the draft's lock until its end; on SQLite the
    lock is this process's and outlives a commit, so this run's transaction commits.
    """
    if draft.imap_copy_started:
        return True
    mark = (
        update(Draft)
        .where(
            Draft.id == draft.id,
            Draft.outbox_id.is_(None),
            Draft.updated_at == draft.updated_at,
        )
        .values(imap_copy_started=True, updated_at=draft.updated_at)
    )
    if session.get_bind().dialect.name == "postgresql":
        with runtime.db.session() as marking:
            return changed(marking, mark)
    done = changed(session, mark)
    session.commit()
    return done


@contextmanager
def _draft_lock(session: Session, draft_id: uuid.UUID) -> Iterator[None]:
    """Held until the session's transaction ends.

    PostgreSQL releases the advisory lock at commit. The lock in this process (SQLite) is
    released here, so the block's work is committed first: the next run must read what
    this one recorded (else it finds the copy unrecorded and uploads it again).
    """
    if session.get_bind().dialect.name == "postgresql":
        key = draft_id.int & (2**63 - 1)  # pg_advisory_xact_lock takes a signed bigint
        session.execute(select(func.pg_advisory_xact_lock(key)))
        yield
        return
    with _LOCAL_LOCKS[draft_id.int % len(_LOCAL_LOCKS)]:
        yield
        session.commit()


def _replace(
    pooled: Pooled, message_id: str, data: bytes, draft: Draft
) -> tuple[CopyResult, int | None]:
    folder = pooled.folder("drafts")
    if folder is None:
        return CopyResult("no_folder"), None
    older = sent_copy.search_message_id(pooled.imap, folder, message_id)
    appended = pooled.imap.append(folder, data, DRAFT_FLAGS, draft.updated_at)
    _delete(pooled, folder, older)
    uidvalidity, uid = appended if appended else (None, None)
    return CopyResult("saved", uid, len(older)), uidvalidity


def _remove(runtime: Runtime, login: gateways.Login, message_id: str) -> CopyResult:
    def step(pooled: Pooled) -> CopyResult:
        folder = pooled.folder("drafts")
        if folder is None:
            return CopyResult("no_folder")
        found = sent_copy.search_message_id(pooled.imap, folder, message_id)
        _delete(pooled, folder, found)
        return CopyResult("removed", None, len(found))

    return sent_copy.with_session(runtime, login, step)


def _delete(pooled: Pooled, folder: str, uids: list[int]) -> None:
    """Remove these versions (the folder was examined read-only to find them)."""
    if uids:
        pooled.imap.select_folder(folder, readonly=False)
        pooled.imap.delete(uids)
