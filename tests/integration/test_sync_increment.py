"""New mail of a synced folder, stored in chunks while it is fetched and parsed
(services/sync/increment.py), against the real Dovecot, into SQLite and PostgreSQL."""

from __future__ import annotations

import email
import uuid
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import func, select

from email_service.errors import RemoteTemporaryError
from email_service.services.search import search
from email_service.services.sync import increment, ingest
from email_service.services.sync import state as sync_state
from email_service.services.sync.run import run_sync
from email_service.store.models import Attachment, Folder, Message, ThreadLink
from tests.conftest import TENANT_A
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login, make_message

THREADS = 3  # interleaved reply chains, so that every chunk holds part of each
PER_THREAD = 5


def _chains(dovecot: Any, user: Any) -> None:
    """THREADS reply chains of PER_THREAD messages, appended interleaved: with the newest
    first, each reply is stored before its parent, often in an earlier chunk."""
    parents: dict[int, str] = {}
    with imap_login(dovecot, user) as client:
        for n in range(THREADS * PER_THREAD):
            chain = n % THREADS
            message = email.message_from_bytes(make_message(100 + n, attachment=n == 7))
            del message["Subject"]
            message["Subject"] = f"chain {chain}" if chain not in parents else f"Re: chain {chain}"
            if chain in parents:
                message["In-Reply-To"] = parents[chain]
                message["References"] = parents[chain]
            parents[chain] = str(message["Message-ID"])
            append(client, "INBOX", message.as_bytes(), "")


def _sync(runtime: Any, account_id: uuid.UUID, **extra: Any) -> Any:
    return run_sync(runtime, TENANT_A, account_id, owner=uuid.uuid4().hex, **extra)


def _stored(runtime: Any, account_id: uuid.UUID) -> int:
    with runtime.db.session() as session:
        return session.scalar(select(func.count()).where(Message.account_id == account_id)) or 0


@pytest.mark.parametrize("chunk", [3, 1000])  # many chunks, and the whole increment in one
def test_new_mail_stored_in_chunks_is_what_one_batch_stores(
    runtime: Any, dovecot: Any, mail_user: Any, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(increment, "CHUNK", chunk)
    with imap_login(dovecot, mail_user) as client:
        append(client, "INBOX", make_message(0), "\\Seen")
    account_id = register(runtime, TENANT_A, dovecot, mail_user)
    _sync(runtime, account_id)
    _chains(dovecot, mail_user)
    committed: list[int] = []

    def progress(name: str, done: int, total: int, size: int) -> None:
        committed.append(_stored(runtime, account_id))
        assert (name, done, total) == ("INBOX", 1 + THREADS * PER_THREAD, 1 + THREADS * PER_THREAD)

    report = _sync(runtime, account_id, progress=progress)
    new = THREADS * PER_THREAD
    assert report.new_messages == new
    assert committed == [1 + new]  # one transaction, with the checkpoint
    with runtime.db.session() as session:
        rows = session.execute(
            select(
                Message.subject, Message.thread_id, Message.subject_key, Message.search_text
            ).where(Message.account_id == account_id)
        ).all()
        threads: dict[str, set[str]] = defaultdict(set)
        for subject, thread_id, key, text in rows:
            threads[subject.removeprefix("Re: ")].add(thread_id)
            assert text and key
        chain_threads = [threads[f"chain {c}"] for c in range(THREADS)]
        assert all(len(t) == 1 for t in chain_threads)  # each chain is one thread
        assert len(set.union(*chain_threads)) == THREADS  # and the chains stay apart
        links = session.scalar(select(func.count()).where(ThreadLink.account_id == account_id))
        assert links and links >= 1 + new
        attachments = session.scalar(
            select(func.count())
            .select_from(Attachment)
            .join(Message, Message.id == Attachment.message_id)
            .where(Message.account_id == account_id)
        )
        assert attachments == 1
        checkpoint = session.scalar(
            select(Folder.uidnext).where(
                Folder.account_id == account_id, Folder.raw_name == "INBOX"
            )
        )
        assert checkpoint == 2 + new
    with runtime.db.session() as session:  # searchable once the run is ok
        page = search(
            session,
            TENANT_A,
            "subject:chain",
            account_id=account_id,
            limit=50,
            cursor=None,
            order="date",
        )
    assert len(page.items) == new


def test_a_run_stopped_inside_an_increment_commits_none_of_it(
    runtime: Any, dovecot: Any, mail_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks already inserted roll back with the rest; the next run stores them all."""
    monkeypatch.setattr(increment, "CHUNK", 2)
    with imap_login(dovecot, mail_user) as client:
        append(client, "INBOX", make_message(0), "")
    account_id = register(runtime, TENANT_A, dovecot, mail_user)
    _sync(runtime, account_id)
    _chains(dovecot, mail_user)
    prepare = ingest.prepare
    calls: list[int] = []
    inserted: list[int] = []
    insert_batch = ingest.insert_batch

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 3 * increment.CHUNK:  # chunks are in the open transaction by now
            raise RemoteTemporaryError("connection lost")
        return prepare(*args, **kwargs)

    def counting(session: Any, batch: Any, **kwargs: Any) -> int:
        inserted.append(len(batch))
        return insert_batch(session, batch, **kwargs)

    monkeypatch.setattr(ingest, "prepare", failing)
    monkeypatch.setattr(ingest, "insert_batch", counting)
    with pytest.raises(RemoteTemporaryError):
        _sync(runtime, account_id)
    assert _stored(runtime, account_id) == 1  # nothing of the increment
    with runtime.db.session() as session:
        assert sync_state.status(session, TENANT_A, account_id).state == "error"
    monkeypatch.setattr(ingest, "prepare", prepare)
    report = _sync(runtime, account_id)
    assert report.new_messages == THREADS * PER_THREAD
    assert _stored(runtime, account_id) == 1 + THREADS * PER_THREAD
    assert inserted[:1] == [increment.CHUNK]  # the failed run had inserted a chunk
