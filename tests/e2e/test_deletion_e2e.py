"""Deletion across real processes: a Celery worker over Redis, the command, PostgreSQL,
Dovecot, all started under umask 022 (the API runs in the test, queueing to the worker).

An account deleted through the API leaves no trace of its canary in DATA_DIR, a pg_dump or
Redis, while another tenant's identical message stays; a tenant purge killed halfway (held
on a row lock, then SIGKILLed) is completed by the next ``email-service sweep``; every
directory and file the processes made under DATA_DIR and LOG_DIR is private.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.config import Settings
from email_service.security.crypto import generate_key
from tests.conftest import JWT_SECRET, bearer
from tests.servers.process import kill_tree as stop
from tests.servers.service import BIN, base_env, cli
from tests.support import canary
from tests.support.mailgen import append, imap_login

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.xdist_group("celery"),
]
REDIS = "redis://127.0.0.1:6379/5"  # this feature's database; flushed before use
TENANTS = ("doomed", "keeper", "purged")
WAIT_S = 90


def _message(subject: str, text: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.org>"
    msg["To"] = "someone@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}@example.org>"
    msg.set_content(text)
    return msg.as_bytes(policy=SMTP)


class Api:
    """JSON calls to the app (in this process, queueing to the Celery worker), per tenant."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def call(self, method: str, path: str, tenant: str, body: Any = None) -> tuple[int, Any]:
        """Status and decoded JSON (None for an empty body)."""
        headers = {**bearer(tenant), "X-Tenant-ID": tenant}
        response = self.client.open(path, method=method, headers=headers, json=body)
        return response.status_code, response.get_json(silent=True)


def _wait(predicate: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Start every process of the test under the common, permissive umask."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _sql(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def test_account_deletion_and_an_interrupted_purge_leave_nothing(
    umask_022: None, tmp_path: Path, pg_url: str, dovecot: Any
) -> None:
    redis.Redis.from_url(REDIS).flushdb()
    secret = {t: f"zqx{t}{secrets.token_hex(6)}" for t in TENANTS}
    shared = _message("shared news", "one message for every tenant")
    env = base_env(
        tmp_path,
        DATABASE_URL=pg_url,
        REDIS_URL=REDIS,
        JWT_SECRET=JWT_SECRET,
        ENCRYPTION_KEY=generate_key(),
        ALLOWED_MAIL_HOSTS="127.0.0.1/8",
        BLOB_GRACE_SECONDS="0",
        SAVE_DRAFTS_TO_IMAP="false",
    )
    cli(env, "migrate")
    worker = subprocess.Popen(
        [str(BIN / "email-service"), "worker", "--concurrency", "1"],
        env=env,
        stdout=(tmp_path / "worker.out").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        api = Api(_app(env).test_client())
        accounts = {t: _account(api, dovecot, t, secret[t], shared) for t in TENANTS}
        for tenant, account in accounts.items():
            _sync(api, tenant, account, tmp_path)
        needles = {t: secret[t].encode() for t in TENANTS}
        assert all(canary.in_files(tmp_path / "data", n) for n in needles.values())
        assert all(canary.in_pg_dump(pg_url, n) for n in needles.values())

        status, _ = api.call("DELETE", f"/api/accounts/{accounts['doomed']}", "doomed")
        assert status == 204
        _wait(lambda: not _sql(pg_url, "SELECT 1 FROM deletion"), "the worker to finish")
    finally:
        stop(worker)

    _interrupted_purge(env, pg_url)
    swept = json.loads(cli(env, "sweep").stdout)
    assert swept["tenants_purged"] == 1 and swept["errors"] == []

    for tenant in ("doomed", "purged"):
        assert canary.in_files(tmp_path / "data", needles[tenant]) == {}
        assert canary.in_files(tmp_path / "logs", needles[tenant]) == {}
        assert canary.in_pg_dump(pg_url, needles[tenant]) == 0
        assert canary.in_redis(REDIS, needles[tenant]) == 0
    assert canary.in_pg_dump(pg_url, needles["keeper"]) > 0  # the other tenant keeps its mail
    assert _sql(pg_url, "SELECT DISTINCT tenant_id FROM email_message") == [("keeper",)]
    keeper = Path(tmp_path / "data" / "blobs" / "tenants")
    assert sorted(p.name for p in keeper.iterdir()) == ["t_keeper"]
    assert sum(1 for p in (keeper / "t_keeper").rglob("*") if p.is_file()) == 2  # own + shared
    _assert_private(tmp_path / "data", at_least=8)  # secrets, blobs and their directories
    _assert_private(tmp_path / "logs", at_least=2)  # the worker's log


def _app(env: dict[str, str]) -> Any:
    """The API in this process, with the worker's settings (DATA_DIR, database, Redis)."""
    names = ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "ENCRYPTION_KEY", "ALLOWED_MAIL_HOSTS")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        flask_env="development",
        data_dir=Path(env["DATA_DIR"]),
        blob_grace_seconds=0,
        save_drafts_to_imap=False,
        **{name.lower(): env[name] for name in names},
    )
    return create_app(settings, configure_logs=False)


def _account(api: Api, dovecot: Any, tenant: str, secret: str, shared: bytes) -> str:
    user = dovecot.add_user(f"{tenant}-{secrets.token_hex(4)}@example.test", "pw-12345678")
    with imap_login(dovecot, user) as client:
        append(client, "INBOX", _message(f"private {tenant}", f"only {tenant} has {secret}"))
        append(client, "INBOX", shared)
    status, body = api.call(
        "POST",
        "/api/accounts",
        tenant,
        {
            "email": user.email,
            "password": user.password,
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.imap_port,
            "imap_security": "none",
        },
    )
    assert status == 201, body
    return str(body["id"])


def _sync(api: Api, tenant: str, account: str, tmp_path: Path) -> None:
    status, body = api.call("POST", f"/api/sync/imap/{account}", tenant)
    assert status in (200, 202), body

    def done() -> dict[str, Any] | None:
        state = api.call("GET", f"/api/sync/status/{account}", tenant)[1]
        return state if state["state"] in ("ok", "error") else None

    final = _wait(done, f"the sync of {tenant}")
    assert final["state"] == "ok", (final, (tmp_path / "worker.out").read_text()[-3000:])


def _interrupted_purge(env: dict[str, str], pg_url: str) -> None:
    """Start a purge, hold it on the account row's lock, SIGKILL it there."""
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT id FROM email_account WHERE tenant_id = 'purged' FOR UPDATE")
        purge = subprocess.Popen(
            [str(BIN / "email-service"), "tenants", "purge", "purged", "--yes"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(
            lambda: _sql(
                pg_url,
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'DELETE FROM email_account%%'",
            ),
            "the purge to reach the account rows",
        )
        os.killpg(purge.pid, signal.SIGKILL)
        purge.wait()
        holder.rollback()
    # halfway: the mail rows are gone, the account and the blobs are not, the record stays
    assert _sql(pg_url, "SELECT kind FROM deletion WHERE tenant_id = 'purged'") == [("tenant",)]
    assert _sql(pg_url, "SELECT count(*) FROM email_message WHERE tenant_id = 'purged'") == [(0,)]
    assert _sql(pg_url, "SELECT count(*) FROM email_account WHERE tenant_id = 'purged'") == [(1,)]
    blobs = Path(env["DATA_DIR"]) / "blobs" / "tenants" / "t_purged"
    assert any(p.is_file() for p in blobs.rglob("*"))


def _assert_private(root: Path, at_least: int) -> None:
    """Every directory 0700 and every file 0600, the root included."""
    modes = {p: p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}
    loose = {str(p): oct(m) for p, m in modes.items() if m != (0o700 if p.is_dir() else 0o600)}
    assert loose == {}
    assert len(modes) >= at_least, sorted(map(str, modes))  # the walk sees what was written
