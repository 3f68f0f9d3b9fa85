"""A real Celery worker over the real Redis sends into a scripted SMTP server and is killed
with SIGKILL mid-send: the message is delivered at most once.

- killed after the final "." (the server took the message, its reply never arrived): after
  the lease runs out the row goes to reconciliation, and nothing sends it again;
- killed before DATA: nothing reached the server, so the row is retried and delivered once.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from email_service.app import create_app
from email_service.config import Settings
from email_service.security.crypto import generate_key
from email_service.services.outgoing import reconcile
from email_service.store import migrate
from email_service.store.models import Outbox, utcnow
from tests.conftest import JWT_SECRET, TENANT_A, TENANT_B, bearer
from tests.servers.process import kill_tree
from tests.servers.service import base_env, spawn
from tests.servers.wait import wait_for
from tests.support.compose_api import add_account, compose, send
from tests.support.smtp_seam import Seam, smtp_seam

# Each test has a Redis of its own (``redis_url``): its worker sees only its own tasks.
pytestmark = pytest.mark.xdist_group("celery")
LEASE_S = 2


class Stack:
    """The API in this process, a worker process, the scripted SMTP server."""

    def __init__(
        self, tmp_path: Path, pg_url: str, seam: Seam, dovecot: Any, user: Any, broker: str
    ):
        key = generate_key()
        self.log = tmp_path / "worker.log"
        self.env = base_env(
            tmp_path,
            DATABASE_URL=pg_url,
            REDIS_URL=broker,
            JWT_SECRET=JWT_SECRET,
            ENCRYPTION_KEY=key,
            ALLOWED_MAIL_HOSTS="127.0.0.1/8",
            SEND_LEASE_SECONDS=str(LEASE_S),
            SEND_RETRY_BASE_SECONDS="0.2",
            SEND_RETRY_MAX_SECONDS="1",
            BLOB_FSYNC="false",
        )
        settings = Settings(
            _env_file=None,
            flask_env="development",
            database_url=pg_url,  # type: ignore[call-arg]
            redis_url=broker,
            jwt_secret=JWT_SECRET,
            encryption_key=[key],
            data_dir=tmp_path / "data",  # the worker's DATA_DIR: the same blob store
            allowed_mail_hosts=["127.0.0.1/8"],
            send_lease_seconds=LEASE_S,
            send_retry_base_seconds=0.2,
            blob_fsync=False,
        )
        app = create_app(settings, configure_logs=False)
        self.runtime = app.extensions["email_service"]
        migrate.upgrade(self.runtime.db.engine)
        self.api = app.test_client()
        self.headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
        add_account(
            self.api,
            self.headers,
            user.email,
            password=user.password,
            smtp_port=seam.port,
            imap_port=dovecot.imap_port,  # the Sent copy and the reconciliation search
        )
        other = {**bearer(TENANT_B), "X-Tenant-ID": TENANT_B}
        add_account(self.api, other, "someone@example2.test", smtp_port=seam.port)
        self.worker: subprocess.Popen[Any] | None = None

    def start_worker(self) -> None:
        self.worker = spawn(self.env, self.log, "worker", "--concurrency", "1")

    def kill_worker(self) -> None:
        assert self.worker is not None
        kill_tree(self.worker, signal.SIGKILL)

    def row(self, outbox_id: str) -> Outbox:
        with self.runtime.db.session() as session:
            return session.scalars(select(Outbox).where(Outbox.id == uuid.UUID(outbox_id))).one()

    def close(self) -> None:
        if self.worker is not None:
            kill_tree(self.worker)
        self.runtime.db.dispose()


@pytest.fixture
def make_stack(
    tmp_path: Path, pg_url: str, dovecot: Any, mail_user: Any, redis_url: str
) -> Iterator[Any]:
    stacks: list[Stack] = []

    def build(seam: Seam) -> Stack:
        stacks.append(Stack(tmp_path, pg_url, seam, dovecot, mail_user, redis_url))
        return stacks[-1]

    yield build
    for stack in stacks:
        stack.close()


def test_worker_killed_after_the_final_dot_never_resends(make_stack: Any) -> None:
    with smtp_seam(script=["hold"]) as seam:
        stack = make_stack(seam)
        stack.start_worker()
        queued = send(stack.api, stack.headers, compose(stack.api, stack.headers)["id"])
        assert seam.arrived.wait(90), stack.log.read_text()[-3000:]
        stack.kill_worker()  # the server has the message; the worker never hears the 250
        seam.release.set()
        row = stack.row(queued["id"])
        assert (row.state, row.stage) == ("sending", "data_end")
        stack.start_worker()
        wait_for(lambda: stack.row(queued["id"]).lease_expires_at < utcnow(), "the lease to end")
        assert reconcile.send_due(stack.runtime) == 1  # beat notices the dead worker
        final = wait_for(
            lambda: (r := stack.row(queued["id"])).reconcile_checks >= 3 and r,
            "reconciliation to give up",
        )
        reconcile.send_due(stack.runtime)  # once more: still nothing to resend
    assert final.state == "needs_reconciliation"
    assert final.attempts == 1
    assert seam.data_ends == 1 and len(seam.delivered) == 1  # at most once


def test_worker_killed_before_data_is_retried_and_delivered_once(make_stack: Any) -> None:
    with smtp_seam(hold_rcpts=1) as seam:
        stack = make_stack(seam)
        stack.start_worker()
        queued = send(stack.api, stack.headers, compose(stack.api, stack.headers)["id"])
        assert seam.arrived.wait(90), stack.log.read_text()[-3000:]
        stack.kill_worker()  # stopped in RCPT: the server holds nothing
        seam.release.set()
        assert stack.row(queued["id"]).stage == "connecting"
        stack.start_worker()
        wait_for(lambda: stack.row(queued["id"]).lease_expires_at < utcnow(), "the lease to end")
        assert reconcile.send_due(stack.runtime) == 1
        sent = wait_for(
            lambda: (r := stack.row(queued["id"])).state == "sent" and r,
            "the retried send",
        )
    assert sent.attempts == 2
    assert seam.data_ends == 1 and len(seam.delivered) == 1
