"""Metrics: the documented names, route templates as labels, sync lag and queue depth read at
scrape time, and the multiprocess files of real processes adding up after they exit."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from email_service.app import create_app
from email_service.observability import metrics, metrics_files
from email_service.services import monitoring
from email_service.store import migrate
from email_service.store.models import SyncState, utcnow
from tests.conftest import TENANT_A, TENANT_B, bearer

SPEC_NAMES = {
    "request_duration_seconds",
    "requests",  # requests_total
    "emails_processed",  # emails_processed_total
    "database_connection_pool_size",
    "redis_cache_hits",  # redis_cache_hits_total
}
# A database of its own: the test pushes into the "celery" list and removes it again.
QUEUE_REDIS = "redis://127.0.0.1:6379/11"
# One writer process: records a few requests and emails, prints its pid, exits.
RECORD = """
import os, sys
from email_service.observability import metrics
for _ in range(int(sys.argv[1])):
    metrics.observe_request("/api/accounts", "GET", 200, 0.02)
metrics.count_emails("synced", int(sys.argv[2]))
metrics.set_pool(2, 3)
print(os.getpid())
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text as {(sample name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, found), v in samples(text).items()
        if n == name and set(labels.items()) <= set(found)
    )


@pytest.fixture
def app(sqlite_settings: Any) -> Any:
    application = create_app(sqlite_settings(), configure_logs=False)
    migrate.upgrade(application.extensions["email_service"].db.engine)
    return application


def test_metrics_has_the_spec_names_without_auth(app: Any) -> None:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    families = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert families >= SPEC_NAMES
    assert {"emails_processed_total"} <= {
        s.name
        for f in text_string_to_metric_families(response.get_data(as_text=True))
        for s in f.samples
    }


def test_requests_are_labelled_by_route_template_method_and_status(app: Any) -> None:
    client = app.test_client()
    route = "/api/accounts/<uuid:account_id>"
    before = client.get("/metrics").get_data(as_text=True)
    headers = {**bearer(TENANT_A), "X-Tenant-ID": TENANT_A}
    for _ in range(3):
        assert client.get(f"/api/accounts/{uuid.uuid4()}", headers=headers).status_code == 404
    client.get(f"/nowhere/{uuid.uuid4()}")
    after = client.get("/metrics").get_data(as_text=True)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("requests_total", route=route, method="GET", status="404") == 3
    assert delta("request_duration_seconds_count", route=route, method="GET", status="404") == 3
    assert delta("requests_total", route="<unmatched>", status="404") == 1
    assert "/nowhere/" not in after  # raw paths never become labels


def test_count_emails_by_kind(app: Any) -> None:
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    metrics.count_emails("synced", 5)
    metrics.count_emails("failed")
    metrics.count_emails("parsed", 0)
    after = client.get("/metrics").get_data(as_text=True)
    for kind, expected in (("synced", 5), ("failed", 1), ("parsed", 0), ("sent", 0)):
        assert (
            value(after, "emails_processed_total", kind=kind)
            - value(before, "emails_processed_total", kind=kind)
            == expected
        )
    with pytest.raises(ValueError, match="unknown email kind"):
        metrics.count_emails("bounced")


def test_sync_lag_per_account_oldest_first_and_bounded(app: Any) -> None:
    runtime = app.extensions["email_service"]
    client = app.test_client()
    ids = []
    for tenant, email in (
        (TENANT_A, "a1@example.com"),
        (TENANT_A, "a2@example.com"),
        (TENANT_B, "b1@example.com"),
    ):
        created = client.post(
            "/api/accounts",
            json={"email": email, "password": "pw"},
            headers={**bearer(tenant), "X-Tenant-ID": tenant},
        )
        ids.append((tenant, created.get_json()["id"]))
    now = utcnow()
    with runtime.db.session() as session:  # a1 synced an hour ago, b1 a minute ago, a2 never
        for (tenant, account_id), ago in ((ids[0], 3600), (ids[2], 60)):
            session.add(
                SyncState(
                    account_id=uuid.UUID(account_id),
                    tenant_id=tenant,
                    state="ok",
                    last_success_at=now - timedelta(seconds=ago),
                )
            )
    lags = monitoring.sync_lags(runtime.db, limit=2, now=now)
    assert [str(lag.account_id) for lag in lags] == [ids[0][1], ids[2][1]]  # a2 is left out
    assert [lag.seconds for lag in lags] == [pytest.approx(3600), pytest.approx(60)]
    everyone = monitoring.sync_lags(runtime.db, now=now)
    assert [str(lag.account_id) for lag in everyone][-1] == ids[1][1]  # since it was added
    text = client.get("/metrics").get_data(as_text=True)
    # A histogram over every active account, naming none (a1 ~3600 s, b1 ~60 s, a2 ~0 s).
    assert value(text, "sync_lag_seconds_bucket", le="300") == 2
    assert value(text, "sync_lag_seconds_bucket", le="7200") == 3
    assert TENANT_B not in text and ids[2][1] not in text
    assert value(text, "sync_lag_max_seconds") >= 3600


@pytest.mark.redis
def test_queue_depth_is_the_brokers_celery_list(sqlite_settings: Any) -> None:
    client = redis.Redis.from_url(QUEUE_REDIS)
    client.delete("celery")
    client.rpush("celery", "a", "b", "c")
    try:
        app = create_app(sqlite_settings(redis_url=QUEUE_REDIS), configure_logs=False)
        text = app.test_client().get("/metrics").get_data(as_text=True)
        assert value(text, "celery_queue_depth", queue="celery") == 3
    finally:
        client.delete("celery")


def test_database_pool_size_is_reported(app: Any) -> None:
    client = app.test_client()
    client.get("/health/ready")
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "database_connection_pool_size", state="idle") >= 1


def _record(directory: Path, requests: int, emails: int) -> int:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", RECORD, str(requests), str(emails)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return int(done.stdout.strip())


def test_dead_processes_are_archived_and_totals_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    monkeypatch.setenv(metrics_files.ENV, str(directory))  # undone after the test
    metrics_files.prepare(directory)
    (directory / "counter_999999.db").write_bytes(b"stale")
    metrics_files.prepare(directory)  # a server's start wipes what a previous run left
    assert metrics_files.sample_files(directory) == []
    plan = [(3, 1), (5, 2), (7, 0), (11, 4), (13, 8)]
    pids = [_record(directory, requests, emails) for requests, emails in plan]
    alive, _ = metrics.render()
    assert len(metrics_files.sample_files(directory)) == 3 * len(plan)
    for pid in pids:
        metrics_files.process_exited(pid, directory)
    archived, _ = metrics.render()
    files = sorted(p.name for p in metrics_files.sample_files(directory))
    assert files == ["counter_archive.db", "histogram_archive.db"]
    for text in (alive.decode(), archived.decode()):
        assert value(text, "requests_total", route="/api/accounts") == 39
        assert value(text, "request_duration_seconds_count", route="/api/accounts") == 39
        assert (
            value(text, "request_duration_seconds_bucket", route="/api/accounts", le="0.025") == 39
        )
        assert value(text, "request_duration_seconds_sum") == pytest.approx(39 * 0.02)
        assert value(text, "emails_processed_total", kind="synced") == 15
    assert value(alive.decode(), "database_connection_pool_size", state="idle") == 3 * len(plan)
    assert value(archived.decode(), "database_connection_pool_size") == 0  # the dead hold none
    more = _record(directory, 2, 1)  # new processes add to the archive
    metrics_files.process_exited(more, directory)
    text = metrics.render()[0].decode()
    assert value(text, "requests_total", route="/api/accounts") == 41
    assert len(metrics_files.sample_files(directory)) == 2


def test_pool_gauges_show_the_last_counts_written_once_each() -> None:
    writes: list[float] = []
    metrics._POOL_LAST.clear()  # as in a new process
    gauge = metrics._POOL_IN_USE
    real = gauge.set
    gauge.set = lambda v: writes.append(v) or real(v)  # type: ignore[method-assign]
    try:
        for counts in [(1, 4), (1, 4), (2, 3), (2, 3), (1, 4)]:
            metrics.set_pool(*counts)
            assert (metrics._POOL_IN_USE._value.get(), metrics._POOL_IDLE._value.get()) == counts
    finally:
        del gauge.set
    assert writes == [1, 2, 1]
