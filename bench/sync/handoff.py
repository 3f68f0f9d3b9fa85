"""A sync with nothing to do, through the running service, next to the Celery hand-off floor.

Run by ``run.sh`` after the harness, while its ``serve`` and worker still run, on the
account the harness synced: ``python handoff.py N`` prints a markdown table of medians
over N runs each, from one persistent HTTP client (no process start-up in the figures):

* ours, ``POST /api/sync/imap/ID`` with ``Prefer: wait`` until it answers with the status
  ``ok`` (and where the time went, from the status row's own times);
* ours, the trigger, then ``GET /api/sync/status/ID`` every 5 ms until that job is ``ok``;
* the floor: a Celery task that does nothing, on a worker with the worker settings
  ``email_service.jobs.make_celery`` gives ours (JSON, late acks, prefetch 1, one prefork
  process), its result read back through the Redis result backend. No API, no database,
  no IMAP: publish, run, result seen. Whatever ours does per sync comes on top of this.

Environment: ``API``, ``TOKEN`` (bench tenant), ``ACCOUNT_FILE`` (the account id), and
``BENCH_FLOOR_REDIS_URL`` (the floor's own Redis database; default db 13).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from celery import Celery

FLOOR_REDIS = os.environ.get("BENCH_FLOOR_REDIS_URL", "redis://127.0.0.1:6379/13")
# Runs before the measured ones: connections opened, the IMAP session pooled, code warm.
WARM_UP = 3
POLL_S = 0.005

# Celery takes these over the arguments below: the floor keeps off the service's broker.
for _name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
    os.environ.pop(_name, None)
app = Celery("floor", broker=FLOOR_REDIS, backend=FLOOR_REDIS)
app.conf.update(  # the settings of email_service.jobs.make_celery that touch a hand-off
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=600,  # the floor's results go soon after the run
)


@app.task(name="floor.nothing")
def nothing() -> dict[str, int]:
    """Do nothing; the result is stored like a sync task's."""
    return {"new_messages": 0}


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def _times(fn: Callable[[], Any], n: int) -> list[Any]:
    for _ in range(WARM_UP):
        fn()
    return [fn() for _ in range(n)]


def _ours(client: httpx.Client, account: str, n: int) -> list[tuple[str, float]]:
    def waited() -> tuple[float, list[float]]:
        started = time.perf_counter()
        answer = client.post(f"/api/sync/imap/{account}", headers={"Prefer": "wait=30"})
        took = time.perf_counter() - started
        body = answer.json()
        assert answer.status_code == 200 and body["state"] == "ok", (answer.status_code, body)
        at = {k: datetime.fromisoformat(body[k]).timestamp() for k in ("queued_at", "started_at")}
        ended = datetime.fromisoformat(body["finished_at"]).timestamp()
        return took, [at["started_at"] - at["queued_at"], ended - at["started_at"]]

    def polled() -> float:
        started = time.perf_counter()
        job = client.post(f"/api/sync/imap/{account}").json()["job_id"]
        while True:
            body = client.get(f"/api/sync/status/{account}").json()
            if body["state"] == "ok" and body["job_id"] == job:
                return time.perf_counter() - started
            time.sleep(POLL_S)

    waits = _times(waited, n)
    polls = _times(polled, n)
    return [
        ("ours: POST with `Prefer: wait`, answered `ok`", _median_ms([w[0] for w in waits])),
        ("  of which queued -> started (Celery hand-off)", _median_ms([w[1][0] for w in waits])),
        ("  of which started -> finished (the run)", _median_ms([w[1][1] for w in waits])),
        ("ours: POST, then GET status every 5 ms until `ok`", _median_ms(polls)),
    ]


def _floor(n: int) -> float:
    here = Path(__file__).resolve().parent
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "handoff:app", "--quiet", "worker", "-c", "1"],
        cwd=here,
        env={**os.environ, "PYTHONPATH": str(here)},
    )
    try:
        nothing.delay().get(timeout=120)  # the worker is up

        def round_trip() -> float:
            started = time.perf_counter()
            nothing.delay().get(timeout=30)
            return time.perf_counter() - started

        return _median_ms(_times(round_trip, n))
    finally:
        worker.terminate()
        worker.wait(30)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="?", type=int, default=30, help="runs of each (30)")
    n = parser.parse_args().runs
    account = Path(os.environ["ACCOUNT_FILE"]).read_text().strip()
    headers = {"Authorization": f"Bearer {os.environ['TOKEN']}", "X-Tenant-ID": "bench"}
    with httpx.Client(base_url=os.environ["API"], headers=headers, timeout=60) as client:
        rows = _ours(client, account, n)
    rows.append(("floor: a Celery task that does nothing, result seen", _floor(n)))
    print(f"\n| no change, one persistent HTTP client, median of {n} | ms |\n|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms} |")


if __name__ == "__main__":
    main()
