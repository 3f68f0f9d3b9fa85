"""A push stack for tests and bench/push: PostgreSQL, a private Redis, a Celery worker and
``email-service watch`` processes, all real; accounts registered through the services."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from sqlalchemy import func, select

from email_service.config import Settings
from email_service.security.crypto import generate_key
from email_service.services.push.leases import LEASE_PREFIX
from email_service.services.runtime import Runtime
from email_service.store import migrate
from email_service.store.models import Folder, Message
from tests.conftest import JWT_SECRET
from tests.servers.ports import free_port
from tests.servers.process import kill_tree as stop
from tests.servers.service import BIN, base_env
from tests.support.accounts import register

T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll until ``predicate`` is truthy; fail naming ``what`` (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class PushStack:
    """The processes of a scaled deployment on loopback; ``close()`` stops them."""

    def __init__(self, tmp: Path, pg_url: str, redis_url: str, **env: str) -> None:
        redis.Redis.from_url(redis_url).flushdb()
        self.tmp = tmp
        self.redis_url = redis_url
        key = generate_key()
        self.env = base_env(
            tmp,
            DATABASE_URL=pg_url,
            REDIS_URL=redis_url,
            JWT_SECRET=JWT_SECRET,
            ENCRYPTION_KEY=key,
            ALLOWED_MAIL_HOSTS="127.0.0.1/8",
            BLOB_FSYNC="false",
            **env,
        )
        settings = Settings(
            _env_file=None,
            flask_env="development",
            database_url=pg_url,
            redis_url=redis_url,
            jwt_secret=JWT_SECRET,
            encryption_key=[key],
            data_dir=tmp / "data",
            allowed_mail_hosts=["127.0.0.1/8"],
        )
        self.runtime = Runtime.build(settings)
        migrate.upgrade(self.runtime.db.engine)
        self.procs: list[subprocess.Popen[Any]] = []
        self.watchers: list[tuple[subprocess.Popen[Any], int]] = []

    def _spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen[Any]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(BIN / "email-service"), *args],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def worker(self, concurrency: int = 2) -> subprocess.Popen[Any]:
        """A Celery worker for the queued syncs."""
        return self._spawn("worker", "worker", "--concurrency", str(concurrency))

    def watcher(self) -> subprocess.Popen[Any]:
        """One more ``email-service watch`` process, with its metrics on a free port."""
        port = free_port()
        proc = self._spawn(f"watch-{len(self.watchers)}", "watch", WATCH_METRICS_PORT=str(port))
        self.watchers.append((proc, port))
        return proc

    def metric(self, proc: subprocess.Popen[Any], name: str) -> float:
        """A sample of a watcher's /metrics (0 while it is not up yet)."""
        port = {p.pid: port for p, port in self.watchers}[proc.pid]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def kill9(self, proc: subprocess.Popen[Any]) -> None:
        """SIGKILL a process group: no clean-up of any kind."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def holders(self) -> dict[str, str]:
        """Account id -> holder id of every live lease."""
        client: Any = redis.Redis.from_url(self.redis_url, decode_responses=True)
        keys = list(client.scan_iter(LEASE_PREFIX + "*"))
        values = client.mget(keys) if keys else []
        return {k.removeprefix(LEASE_PREFIX): v for k, v in zip(keys, values, strict=True) if v}

    def add_account(self, tenant: str, dovecot: Any, user: Any) -> uuid.UUID:
        """Register a Dovecot user as an account of ``tenant``."""
        return register(self.runtime, tenant, dovecot, user)

    def count(self, account_id: uuid.UUID, subject: str | None = None, folder: str = "") -> int:
        """Stored messages of the account (with that subject / in that folder)."""
        query = select(func.count()).select_from(Message).join(Folder)
        query = query.where(Message.account_id == account_id)
        if subject is not None:
            query = query.where(Message.subject == subject)
        if folder:
            query = query.where(Folder.raw_name == folder)
        with self.runtime.db.session() as session:
            return int(session.scalar(query) or 0)

    def flags(self, account_id: uuid.UUID, subject: str) -> list[str]:
        """The stored flags of the account's message with that subject."""
        with self.runtime.db.session() as session:
            found = session.scalar(
                select(Message.flags).where(
                    Message.account_id == account_id, Message.subject == subject
                )
            )
        return list(found or [])

    def close(self) -> None:
        """Stop everything still running."""
        for proc in self.procs:
            stop(proc)
        self.runtime.db.engine.dispose()


def message(subject: str) -> bytes:
    """A small message with a unique subject."""
    return (
        f"From: Sender <sender@example.test>\r\nTo: someone@example.test\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@example.test>\r\n"
        f"Date: Mon, 07 Dec 2026 03:00:00 +0000\r\n\r\nbody of {subject}\r\n"
    ).encode()
