"""Metrics add up across processes: N requests over 4 Gunicorn workers give
requests_total = N, also while workers restart every few requests (max_requests), with
the per-process files kept few; a restart of the server starts from zero; a Celery
worker's pool children add up on its own metrics port."""

from __future__ import annotations

import contextlib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from email_service.config import Settings
from email_service.jobs import make_celery
from tests.conftest import REDIS_URL
from tests.ops.client import call
from tests.ops.test_metrics import value
from tests.servers.ports import free_port
from tests.servers.service import base_env, cli, running
from tests.servers.wait import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]
WORKERS = 4
TASKS = 24


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return base_env(
        tmp_path, REDIS_URL=REDIS_URL, GUNICORN_WORKERS=str(WORKERS), GUNICORN_THREADS="2", **extra
    )


def _hammer(port: int, n: int) -> list[int]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: call(port, "GET", "/health")[0], range(n)))


def _scrape(port: int) -> str:
    status, _, body = call(port, "GET", "/metrics")
    assert status == 200
    return body.decode()


def test_requests_total_adds_up_over_four_workers(tmp_path: Path) -> None:
    n = 200
    env = _env(tmp_path)
    cli(env, "migrate")
    with running(env, tmp_path / "serve.out") as server:
        before = value(_scrape(server.port), "requests_total", route="/health")  # start-up polls
        assert set(_hammer(server.port, n)) == {200}
        text = _scrape(server.port)
        pids = len(
            list((Path(env["DATA_DIR"]) / "metrics" / f"api-{server.port}").glob("counter_*.db"))
        )
    total = value(text, "requests_total", route="/health") - before
    print(f"\nrequests_total over {WORKERS} workers ({pids} served): {total:.0f} of {n} sent")
    assert total == n
    timed = value(text, "request_duration_seconds_count", route="/health", status="200")
    assert timed - before == n
    assert pids >= 2


def test_totals_survive_worker_restarts_and_files_stay_few(tmp_path: Path) -> None:
    n, every = 160, 10  # each worker restarts after 10 requests: ~20 worker lifetimes
    env = _env(tmp_path, GUNICORN_CMD_ARGS=f"--max-requests {every} --max-requests-jitter 0")
    cli(env, "migrate")
    with running(env, tmp_path / "serve.out") as server:
        metrics_dir = Path(env["DATA_DIR"]) / "metrics" / f"api-{server.port}"
        before = value(_scrape(server.port), "requests_total", route="/health")  # start-up polls
        assert set(_hammer(server.port, n)) == {200}
        text = _scrape(server.port)
        files = sorted(p.name for p in metrics_dir.glob("*.db"))
        booted = sum("Booting worker" in line for line in server.lines())
    total = value(text, "requests_total", route="/health") - before
    print(
        f"\nwith {booted} worker lifetimes: requests_total {total:.0f} of {n}; {len(files)} files"
    )
    assert booted >= 2 * WORKERS  # workers really were replaced, several times
    assert total == n
    assert value(text, "request_duration_seconds_count", route="/health") - before == n
    assert {"counter_archive.db", "histogram_archive.db"} <= set(files)
    assert len(files) <= 3 * (WORKERS + 1) + 2  # live workers' files + archives, not per lifetime


def test_a_restarted_server_starts_from_zero(tmp_path: Path) -> None:
    env = _env(tmp_path)
    port = free_port()
    finals: list[float] = []
    for n in (100, 10):
        with running(env, tmp_path / "serve.out", port=port) as server:
            before = value(_scrape(server.port), "requests_total", route="/health")
            if finals:  # counts carried over would start at the last run's total at least
                assert before < finals[-1]
            _hammer(server.port, n)
            after = value(_scrape(server.port), "requests_total", route="/health")
            assert after - before == n
            finals.append(after)


def _wait_metric(port: int, name: str, expected: float, **labels: str) -> float:
    """The metric once it reaches ``expected``, or the last value seen (-1: no answer)."""
    found = [-1.0]

    def reached() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                found[0] = value(r.read().decode(), name, **labels)
        except OSError:
            found[0] = -1.0
        return found[0] >= expected

    with contextlib.suppress(AssertionError):  # the caller asserts on the value
        wait_for(reached, f"{name} to reach {expected}", 60, interval=0.2)
    return found[0]


def test_celery_pool_children_add_up_on_the_workers_port(tmp_path: Path, redis_url: str) -> None:
    metrics_port = free_port()
    env = base_env(tmp_path, REDIS_URL=redis_url, CELERY_METRICS_PORT=str(metrics_port))
    cli(env, "migrate")
    celery: Any = make_celery(
        Settings(
            _env_file=None, redis_url=redis_url, data_dir=tmp_path / "data", flask_env="development"
        )  # type: ignore[call-arg]
    )
    with running(env, tmp_path / "worker.out", "worker", "--concurrency", "2") as worker:
        for i in range(TASKS):
            celery.send_task("sync_due_accounts", task_id=f"metrics-{i}")
        done = _wait_metric(
            metrics_port, "celery_tasks_total", TASKS, task="sync_due_accounts", state="success"
        )
        processes = len(
            list(
                (Path(env["DATA_DIR"]) / "metrics" / f"worker-{metrics_port}").glob("counter_*.db")
            )
        )
        assert worker.proc.poll() is None
    print(
        f"\ncelery_tasks_total on the worker's port: {done:.0f} of {TASKS} "
        f"({processes} processes wrote samples)"
    )
    assert done == TASKS
