"""Delayed jobs: the Celery queue publishes a countdown the worker honours (its ETA header
in the real Redis broker); the embedded queue runs the job once the time has passed."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from email_service.jobs import make_celery, wire_queue
from email_service.jobs.queues import (
    DEFER_LEASE_S,
    DEFER_TICK_S,
    DEFERRED,
    DEFERRED_JOBS,
    DEFERRED_TAKEN,
    CeleryQueue,
    EmbeddedQueue,
)
from email_service.services.runtime import Runtime

pytestmark = pytest.mark.redis
BROKER = "redis://127.0.0.1:6379/8"  # this test's own database, flushed before use


def test_celery_queue_publishes_the_countdown(sqlite_settings: Any) -> None:
    client = redis.Redis.from_url(BROKER)
    client.flushdb()
    queue = CeleryQueue(make_celery(sqlite_settings(redis_url=BROKER)))
    published = datetime.now(UTC)
    queue.enqueue_later(3.0, "store_draft_copy", "job-1", draft_id="d", reason="saved")
    (raw,) = client.lrange("celery", 0, -1)
    message = json.loads(raw)
    eta = datetime.fromisoformat(message["headers"]["eta"])
    assert 2.5 <= (eta - published).total_seconds() <= 4.0
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (message["headers"]["task"], message["headers"]["id"]) == ("store_draft_copy", "job-1")
    assert args == [] and kwargs == {"draft_id": "d", "reason": "saved"}
    client.flushdb()


def test_embedded_queue_runs_a_delayed_job_once_it_is_due() -> None:
    ran: list[tuple[float, dict[str, str]]] = []
    done = threading.Event()

    def handler(job_id: str, **kwargs: str) -> None:
        ran.append((time.monotonic(), kwargs))
        done.set()

    queue = EmbeddedQueue({"job": handler})
    try:
        queued = time.monotonic()
        queue.enqueue_later(0.3, "job", "job-1", value="x")
        assert done.wait(5)
        ((when, kwargs),) = ran
        assert when - queued >= 0.3 and kwargs == {"value": "x"}
    finally:
        queue.shutdown()


def test_embedded_queue_drops_a_delayed_job_at_shutdown() -> None:
    ran: list[str] = []
    done = threading.Event()

    def handler(job_id: str) -> None:
        ran.append(job_id)
        done.set()

    queue = EmbeddedQueue({"job": handler})
    queue.enqueue_later(0.2, "job", "late")
    queue.enqueue("job", "now")  # runs: the queue works until it is shut down
    assert done.wait(5)
    queue.shutdown()  # at-most-once: what waits for its time is dropped
    time.sleep(0.4)
    assert ran == ["now"]


def test_the_services_queue_waits_for_no_result(sqlite_settings: Any, redis_url: str) -> None:
    """The API's queue publishes a task and nothing more: no subscription to its result
    channel (two Redis round trips per task that nothing would read)."""
    runtime = Runtime.build(sqlite_settings(redis_url=redis_url))
    wire_queue(runtime)
    client = redis.Redis.from_url(redis_url)
    client.config_resetstat()
    assert runtime.queue is not None
    runtime.queue.enqueue("send_email", "job-1", draft_id="d", tenant_id="t")
    runtime.queue.enqueue_later(3.0, "store_draft_copy", "job-2", draft_id="d", reason="saved")
    calls = {
        name.removeprefix("cmdstat_"): stats["calls"]
        for name, stats in client.info("commandstats").items()
    }
    assert client.llen("celery") == 2
    assert calls.get("lpush") == 2
    assert "subscribe" not in calls and "unsubscribe" not in calls, calls


def _published(client: Any) -> list[tuple[str, dict[str, str]]]:
    """(task, kwargs) of every message waiting in the broker's default queue."""
    found = []
    for raw in client.lrange("celery", 0, -1):
        message = json.loads(raw)
        _args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], kwargs))
    return found


def test_a_deferred_job_waits_in_redis_once_per_key_until_due(
    sqlite_settings: Any, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    queue = CeleryQueue(make_celery(sqlite_settings(redis_url=redis_url)))
    queue.defer(3.0, "store_draft_copy", "d:a", draft_id="d", reason="saved")
    queue.defer(3.0, "store_draft_copy", "d:a", draft_id="d", reason="saved")  # saved again
    assert _published(client) == []  # no task, no countdown held by a worker
    assert queue.publish_due() == 0  # not due yet
    assert queue.publish_due(now=time.time() + 3.5) == 1
    assert _published(client) == [("store_draft_copy", {"draft_id": "d", "reason": "saved"})]
    assert queue.publish_due(now=time.time() + 10) == 0  # taken once
    queue.defer(3.0, "store_draft_copy", "d:a", draft_id="d", reason="saved")  # a later save
    assert queue.publish_due(now=time.time() + 3.5) == 1


def test_a_cancelled_deferred_job_never_becomes_a_task(
    sqlite_settings: Any, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    queue = CeleryQueue(make_celery(sqlite_settings(redis_url=redis_url)))
    queue.defer(3.0, "store_draft_copy", "d:a", draft_id="d")
    queue.defer(3.0, "store_draft_copy", "e:a", draft_id="e")
    queue.cancel("store_draft_copy", "d:a")
    queue.cancel("store_draft_copy", "f:a")  # nothing deferred under it: nothing happens
    assert queue.publish_due(now=time.time() + 3.5) == 1
    assert _published(client) == [("store_draft_copy", {"draft_id": "e"})]


def test_beat_queues_the_deferred_jobs_every_tick(sqlite_settings: Any, redis_url: str) -> None:
    app = make_celery(sqlite_settings(redis_url=redis_url))
    app.loader.import_default_modules()
    entry = app.conf.beat_schedule["queue-deferred-jobs"]
    assert entry["task"] in app.tasks and entry["schedule"] == DEFER_TICK_S


def _one_deferred(sqlite_settings: Any, redis_url: str, **kwargs: str) -> tuple[Any, Any, Any]:
    """The broker's client, the Celery app and its queue, one job deferred 3 s under "d:a"."""
    app = make_celery(sqlite_settings(redis_url=redis_url))
    queue = CeleryQueue(app)
    queue.defer(3.0, "store_draft_copy", "d:a", draft_id="d", **kwargs)
    return redis.Redis.from_url(redis_url), app, queue


def test_a_deferred_job_taken_by_a_tick_that_dies_is_queued_after_its_lease(
    sqlite_settings: Any, redis_url: str, monkeypatch: Any
) -> None:
    client, app, queue = _one_deferred(sqlite_settings, redis_url)
    due = time.time() + 3.5

    def broker_gone(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the tick's process dies here")

    with monkeypatch.context() as patched:
        patched.setattr(app, "send_task", broker_gone)
        with pytest.raises(ConnectionError):
            queue.publish_due(now=due)
    assert _published(client) == []
    assert client.zcard(DEFERRED) == 0 and client.zcard(DEFERRED_TAKEN) == 1
    assert queue.publish_due(now=due + 1) == 0  # leased: not taken twice meanwhile
    assert queue.publish_due(now=due + DEFER_LEASE_S + 1) == 1
    assert _published(client) == [("store_draft_copy", {"draft_id": "d"})]
    assert client.zcard(DEFERRED_TAKEN) == 0 and client.hlen(DEFERRED_JOBS) == 0
    assert queue.publish_due(now=due + 2 * DEFER_LEASE_S + 2) == 0


def test_a_job_deferred_again_while_taken_keeps_its_arguments(
    sqlite_settings: Any, redis_url: str, monkeypatch: Any
) -> None:
    client, app, queue = _one_deferred(sqlite_settings, redis_url, reason="saved")
    send_task = app.send_task

    def saved_again_meanwhile(*args: Any, **kwargs: Any) -> Any:
        queue.defer(3.0, "store_draft_copy", "d:a", draft_id="d", reason="saved")
        return send_task(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", saved_again_meanwhile)
    assert queue.publish_due(now=time.time() + 3.5) == 1
    monkeypatch.setattr(app, "send_task", send_task)
    assert client.zcard(DEFERRED) == 1 and client.hlen(DEFERRED_JOBS) == 1
    assert queue.publish_due(now=time.time() + 3.5) == 1
    assert len(_published(client)) == 2
