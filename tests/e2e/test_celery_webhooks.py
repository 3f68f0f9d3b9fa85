"""Webhooks through a real Celery worker over the real Redis and PostgreSQL.

The API runs in this process (its queue is Celery); dispatch ticks here queue
``deliver_webhook`` tasks that a worker process runs against a receiver on loopback
answering 500 then 200, beside one that hangs: every event arrives, each ``webhook-id``
names one event, every signature verifies, and tenant B's endpoint gets only B's events.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from standardwebhooks.webhooks import Webhook

from email_service.app import create_app
from email_service.config import Settings
from email_service.jobs import event_work
from email_service.security.crypto import generate_key
from email_service.store import change_log, migrate
from email_service.store.change_log import ChangeType, Op
from tests.conftest import JWT_SECRET, TENANT_A, TENANT_B, bearer
from tests.servers.process import kill_tree as stop
from tests.servers.service import BIN, base_env
from tests.servers.webhook_receiver import Receiver, webhook_receiver

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("celery")]
BROKER = "redis://127.0.0.1:6379/2"  # this test's own database, flushed before use
PATIENCE_S = 90.0
TIMINGS = {
    "webhook_timeout_seconds": "1",
    "webhook_retry_base_seconds": "0.1",
    "webhook_retry_max_seconds": "0.5",
}


@pytest.fixture
def stack(tmp_path: Path, pg_url: str) -> Iterator[tuple[Any, subprocess.Popen[Any]]]:
    redis.Redis.from_url(BROKER).flushdb()
    key = generate_key()
    env = base_env(
        tmp_path,
        DATABASE_URL=pg_url,
        REDIS_URL=BROKER,
        JWT_SECRET=JWT_SECRET,
        ENCRYPTION_KEY=key,
        ALLOWED_WEBHOOK_HOSTS="127.0.0.1",
        **{k.upper(): v for k, v in TIMINGS.items()},
    )
    settings = Settings(
        _env_file=None,
        flask_env="development",
        database_url=pg_url,  # type: ignore[call-arg]
        redis_url=BROKER,
        jwt_secret=JWT_SECRET,
        encryption_key=[key],
        data_dir=tmp_path / "data",
        allowed_webhook_hosts=["127.0.0.1"],
        **TIMINGS,
    )
    app = create_app(settings, configure_logs=False)
    runtime = app.extensions["email_service"]
    migrate.upgrade(runtime.db.engine)
    log = (tmp_path / "worker.log").open("ab")
    worker = subprocess.Popen(
        [str(BIN / "email-service"), "worker", "--concurrency", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield app, worker
    finally:
        stop(worker)
        runtime.db.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def _hook(api: Any, tenant: str, url: str) -> str:
    headers = {**bearer(tenant), "X-Tenant-ID": tenant}
    response = api.post("/api/webhooks", json={"url": url, "event_types": ["*"]}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["secret"])


def test_worker_delivers_every_event_despite_500s_and_a_hanging_receiver(
    stack: Any, receiver: Receiver
) -> None:
    app, worker = stack
    runtime = app.extensions["email_service"]
    api = app.test_client()
    secret_a = _hook(api, TENANT_A, f"{receiver.url}/flaky")
    _hook(api, TENANT_A, f"{receiver.url}/hang")
    _hook(api, TENANT_B, f"{receiver.url}/ok")
    events = {TENANT_A: [str(uuid.uuid4()) for _ in range(20)], TENANT_B: [str(uuid.uuid4())]}
    with runtime.db.session() as session:
        for tenant, ids in events.items():
            for entity in ids:
                change_log.record(session, tenant, None, ChangeType.MESSAGE, entity, Op.CREATED)

    def delivered() -> set[str]:
        return {json.loads(r.body)["data"]["id"] for r in receiver.on("/flaky") if r.status == 200}

    deadline = time.monotonic() + PATIENCE_S
    while delivered() != set(events[TENANT_A]) or not receiver.on("/ok"):
        assert worker.poll() is None, "the worker exited"
        assert time.monotonic() < deadline, f"delivered {len(delivered())} of 20"
        event_work.dispatch_webhooks(runtime)
        time.sleep(0.1)
    flaky = receiver.on("/flaky")
    verifier = Webhook(secret_a)
    ids_by_webhook_id: dict[str, set[str]] = {}
    for request in flaky:
        body = verifier.verify(request.body, request.headers)
        ids_by_webhook_id.setdefault(request.headers["webhook-id"], set()).add(body["data"]["id"])
    assert len(ids_by_webhook_id) == 20  # one webhook-id per event ...
    assert all(len(ids) == 1 for ids in ids_by_webhook_id.values())  # ... naming that event
    assert {json.loads(r.body)["data"]["id"] for r in receiver.on("/ok")} == set(events[TENANT_B])
    assert not set(events[TENANT_B]) & {json.loads(r.body)["data"]["id"] for r in flaky}
