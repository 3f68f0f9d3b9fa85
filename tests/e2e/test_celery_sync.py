"""A real Celery worker over the real Redis syncs from the real Dovecot into PostgreSQL,
and is killed with SIGKILL in the middle: the next run completes with 0 lost, 0 duplicates.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from email_service.app import create_app
from email_service.config import Settings
from email_service.security.crypto import generate_key
from email_service.store import migrate
from email_service.store.models import Message
from tests.conftest import JWT_SECRET, TENANT_A, bearer
from tests.servers.process import kill_tree
from tests.servers.service import base_env, spawn
from tests.servers.wait import wait_for
from tests.support.mailgen import append, imap_login, make_message, status

pytestmark = pytest.mark.xdist_group("celery")
MESSAGES = 1500
LOCK_TTL_S = 3
# A sync of MESSAGES on a loaded 2-core machine; only bounds a hang.
WAIT_S = 90


def test_worker_killed_mid_sync_resumes_without_loss_or_duplicates(
    tmp_path: Path, pg_url: str, dovecot: Any, mail_user: Any, redis_url: str
) -> None:
    with imap_login(dovecot, mail_user) as client:
        for i in range(MESSAGES):
            append(client, "INBOX", make_message(i, attachment=i % 50 == 0))
        expected = status(client, "INBOX")["MESSAGES"]
    key = generate_key()
    env = base_env(
        tmp_path,
        DATABASE_URL=pg_url,
        REDIS_URL=redis_url,
        JWT_SECRET=JWT_SECRET,
        ENCRYPTION_KEY=key,
        ALLOWED_MAIL_HOSTS="127.0.0.1/8",
        SYNC_LOCK_TTL_SECONDS=str(LOCK_TTL_S),
        BLOB_FSYNC="false",
    )
    settings = Settings(
        _env_file=None,
        flask_env="development",
        database_url=pg_url,  # type: ignore[call-arg]
        redis_url=redis_url,
        jwt_secret=JWT_SECRET,
        encryption_key=[key],
        data_dir=tmp_path / "data",
        allowed_mail_hosts=["127.0.0.1/8"],
        sync_lock_ttl_seconds=LOCK_TTL_S,
    )
    app = create_app(settings, configure_logs=False)
    runtime = app.extensions["email_service"]
    migrate.upgrade(runtime.db.engine)
    api = app.test_client()
    headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    account = api.post(
        "/api/accounts",
        headers=headers,
        json={
            "email": mail_user.email,
            "password": mail_user.password,
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.imap_port,
            "imap_security": "none",
        },
    ).get_json()
    status_url = f"/api/sync/status/{account['id']}"

    def progress() -> dict[str, Any]:
        return dict(api.get(status_url, headers=headers).get_json())

    worker = spawn(env, tmp_path / "worker.log", "worker", "--concurrency", "1")
    try:
        job = api.post(f"/api/sync/imap/{account['id']}", headers=headers).get_json()
        wait_for(
            lambda: (
                progress()["state"] == "running"
                and progress()["folders"].get("INBOX", {}).get("done", 0) > 0
            ),
            "sync to start",
            WAIT_S,
        )
        kill_tree(worker, signal.SIGKILL)
        killed_at = progress()
        assert killed_at["state"] == "running"
        done_when_killed = killed_at["folders"]["INBOX"]["done"]
        assert 0 < done_when_killed < expected
        worker = spawn(env, tmp_path / "worker.log", "worker", "--concurrency", "1")
        time.sleep(LOCK_TTL_S + 0.5)  # the dead worker's lock expires
        again = api.post(f"/api/sync/imap/{account['id']}", headers=headers).get_json()
        assert again["job_id"] != job["job_id"] and not again["already_running"]
        final = wait_for(
            lambda: progress() if progress()["state"] in ("ok", "error") else None,
            "second sync to finish",
            WAIT_S,
        )
        assert final["state"] == "ok", (final, (tmp_path / "worker.log").read_text()[-3000:])
        # A trigger that waits (Prefer: wait) answers with the status the worker ended with.
        waited = api.post(
            f"/api/sync/imap/{account['id']}", headers={**headers, "Prefer": f"wait={WAIT_S}"}
        )
        assert waited.status_code == 200, waited.get_json()
        assert waited.get_json()["state"] == "ok"
        assert waited.get_json()["job_id"] not in (job["job_id"], again["job_id"])
    finally:
        kill_tree(worker)
    with runtime.db.session() as session:
        rows = session.execute(select(Message.folder_id, Message.uid)).all()
    assert len(rows) == expected  # 0 lost
    assert len(set(rows)) == len(rows)  # 0 duplicates
