"""The embedded default (no Redis, SQLite, in-process jobs): the watcher thread of the
service process hears Dovecot and the in-process runner syncs, nobody triggering it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from email_service.config import Settings
from email_service.jobs import push, wire_queue
from email_service.jobs.queues import EmbeddedQueue
from email_service.security.crypto import generate_key
from email_service.services.runtime import Runtime
from email_service.store import migrate
from email_service.store.models import Folder, Message
from tests.conftest import JWT_SECRET, TENANT_A, TENANT_B
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login

pytestmark = [pytest.mark.dovecot]


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _runtime(tmp_path: Path, **extra: Any) -> Runtime:
    settings = Settings(
        _env_file=None,
        flask_env="development",
        jwt_secret=JWT_SECRET,
        encryption_key=[generate_key()],
        data_dir=tmp_path / "data",
        allowed_mail_hosts=["127.0.0.1/8"],
        blob_fsync=False,
        **extra,
    )
    runtime = Runtime.build(settings)
    migrate.upgrade(runtime.db.engine)
    return runtime


def _count(runtime: Runtime, account: uuid.UUID, folder: str | None = None) -> int:
    query = select(func.count()).select_from(Message).join(Folder)
    query = query.where(Message.account_id == account)
    if folder is not None:
        query = query.where(Folder.raw_name == folder)
    with runtime.db.session() as session:
        return int(session.scalar(query) or 0)


def test_embedded_watcher_syncs_new_mail_unasked(
    tmp_path: Path, dovecot: Any, mail_user: Any
) -> None:
    runtime = _runtime(tmp_path)
    assert runtime.settings.embedded
    other_user = dovecot.add_user(f"other-{uuid.uuid4().hex[:8]}@example.test", "pw-other-123")
    with imap_login(dovecot, mail_user) as client:
        client.create("Receipts")
    account = register(runtime, TENANT_A, dovecot, mail_user)
    other = register(runtime, TENANT_B, dovecot, other_user)
    wire_queue(runtime)  # the embedded runner: jobs on this process's threads
    assert isinstance(runtime.queue, EmbeddedQueue)
    watcher = push.start_embedded(runtime)
    assert watcher is not None
    try:
        _wait(lambda: _count(runtime, account) == 0 and _folders(runtime, account), "first sync")
        with imap_login(dovecot, mail_user) as client:
            append(client, "INBOX", b"Subject: one\r\n\r\nhello\r\n")
            append(client, "Receipts", b"Subject: two\r\n\r\nhello\r\n")
        _wait(lambda: _count(runtime, account, "INBOX") == 1, "INBOX message")
        _wait(lambda: _count(runtime, account, "Receipts") == 1, "Receipts message")
        assert _count(runtime, other) == 0
    finally:
        watcher.stop()
        runtime.queue.shutdown()
    assert not watcher.thread.is_alive()


def _folders(runtime: Runtime, account: uuid.UUID) -> bool:
    with runtime.db.session() as session:
        names = session.scalars(select(Folder.raw_name).where(Folder.account_id == account))
        return "Receipts" in set(names)


def test_push_off_starts_no_watcher(tmp_path: Path) -> None:
    assert push.start_embedded(_runtime(tmp_path, enable_imap_push=False)) is None
    assert push.start_embedded(_runtime(tmp_path, enable_imap_sync=False)) is None
