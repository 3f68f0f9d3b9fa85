"""JobQueue implementations: Celery (Redis broker) and the embedded in-process runner."""

from __future__ import annotations

import contextvars
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from celery import Celery

from email_service.errors import RemoteTemporaryError

log = logging.getLogger(__name__)
# Embedded retries mirror the Celery task's: doubling from 30 s, capped, a few attempts.
EMBEDDED_RETRY_BASE_S = 30.0
EMBEDDED_RETRY_MAX_S = 900.0
EMBEDDED_MAX_ATTEMPTS = 4
# Deferred jobs (CeleryQueue.defer) wait in the Redis broker: a sorted set of their names by
# the time they are due, and a hash of each name's task and arguments. Beat's tick
# (``queue_deferred_jobs``, every DEFER_TICK_S) queues those due, at most DEFER_BATCH a tick.
# A job taken to be queued moves to a third set, scored by when its lease ends, until it is
# published: one whose lease ended (the tick died before publishing) is taken again.
DEFERRED = "email-service:deferred"
DEFERRED_JOBS = "email-service:deferred-jobs"
DEFERRED_TAKEN = "email-service:deferred-taken"
DEFER_TICK_S = 1.0
DEFER_BATCH = 500
DEFER_LEASE_S = 60.0
# Takes the due jobs, and those whose lease ended, into the taken set (leased until
# ARGV[3]); returns name, job, name, job... (a job cancelled meanwhile is false).
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local more = tonumber(ARGV[2]) - #due
if more > 0 then
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, more)) do
    table.insert(due, name)
  end
end
if #due == 0 then return {} end
local out = {}
for _, name in ipairs(due) do
  redis.call('ZREM', KEYS[1], name)
  redis.call('ZADD', KEYS[3], ARGV[3], name)
  table.insert(out, name)
  table.insert(out, redis.call('HGET', KEYS[2], name))
end
return out
"""
# Done with published (or cancelled) jobs: out of the taken set, and their arguments
# dropped unless the job was deferred again meanwhile (a later save).
_DONE = """
for _, name in ipairs(ARGV) do
  redis.call('ZREM', KEYS[3], name)
  if not redis.call('ZSCORE', KEYS[1], name) then redis.call('HDEL', KEYS[2], name) end
end
return #ARGV
"""


class CeleryQueue:
    """Sends tasks by name to the Celery broker.

    A deferred job waits in Redis (when the broker is Redis) rather than in a worker as a
    countdown: one cancelled before it is due (a saved draft sent at once) never becomes a
    task. At least once: a tick that dies between taking a due job and queueing it leaves
    the job leased, and a tick after the lease (DEFER_LEASE_S) queues it.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        broker = str(app.conf.broker_url or "")
        self.redis: redis.Redis | None = None
        if broker.startswith(("redis://", "rediss://")):
            self.redis = redis.Redis.from_url(broker)

    def enqueue(self, task: str, job_id: str, **kwargs: str) -> None:
        """Publish the task with ``job_id`` as its Celery task id."""
        self.app.send_task(task, kwargs=kwargs, task_id=job_id)

    def enqueue_later(self, seconds: float, task: str, job_id: str, **kwargs: str) -> None:
        """Publish the task with a countdown: a worker holds it until it is due."""
        self.app.send_task(task, kwargs=kwargs, task_id=job_id, countdown=seconds)

    def enqueue_many(self, task: str, jobs: list[tuple[str, dict[str, str]]]) -> None:
        """Publish every job over one producer (one broker connection, no per-task setup)."""
        with self.app.producer_or_acquire() as producer:
            for job_id, kwargs in jobs:
                self.app.send_task(task, kwargs=kwargs, task_id=job_id, producer=producer)

    def defer(self, seconds: float, task: str, key: str, **kwargs: str) -> None:
        """Keep the job in Redis until due (one round trip); else a countdown."""
        if self.redis is None:
            self.enqueue_later(seconds, task, uuid.uuid4().hex, **kwargs)
            return
        name = f"{task}:{key}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(DEFERRED, {name: time.time() + seconds}, nx=True)
        pipe.hset(DEFERRED_JOBS, name, json.dumps({"task": task, "kwargs": kwargs}))
        pipe.execute()

    def cancel(self, task: str, key: str) -> None:
        """Drop a deferred job still waiting (one round trip)."""
        if self.redis is None:
            return
        name = f"{task}:{key}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(DEFERRED, name)
        pipe.hdel(DEFERRED_JOBS, name)
        pipe.execute()

    def publish_due(self, now: float | None = None) -> int:
        """Queue the deferred jobs due by ``now`` (beat's tick); how many."""
        if self.redis is None:
            return 0
        at = time.time() if now is None else now
        keys = (DEFERRED, DEFERRED_JOBS, DEFERRED_TAKEN)
        taken: list[bytes | None] = self.redis.eval(
            _TAKE_DUE, 3, *keys, at, DEFER_BATCH, at + DEFER_LEASE_S
        )
        names = [name for name in taken[0::2] if name is not None]
        jobs = [json.loads(raw) for raw in taken[1::2] if raw is not None]
        if jobs:
            with self.app.producer_or_acquire() as producer:
                for job in jobs:
                    self.app.send_task(
                        job["task"],
                        kwargs=job["kwargs"],
                        task_id=uuid.uuid4().hex,
                        producer=producer,
                    )
        if names:
            self.redis.eval(_DONE, 3, *keys, *names)
        return len(jobs)


class EmbeddedQueue:
    """Runs tasks on a small thread pool inside this process (no broker).

    At-most-once, like any in-memory queue: a crash loses queued jobs, which is why every
    task is idempotent and checkpointed in the database, and the periodic job re-queues
    accounts whose sync is due or whose lock expired.
    """

    def __init__(self, handlers: dict[str, Callable[..., Any]], workers: int = 2) -> None:
        self.handlers = handlers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._timers: set[threading.Timer] = set()  # retries waiting for their time
        self._closed = False
        self._lock = threading.Lock()

    def enqueue(self, task: str, job_id: str, **kwargs: str) -> None:
        """Run the handler soon on the pool, in a copy of the caller's log context."""
        self._submit(contextvars.copy_context(), task, job_id, 1, kwargs)

    def enqueue_later(self, seconds: float, task: str, job_id: str, **kwargs: str) -> None:
        """Run the handler once ``seconds`` have passed (dropped if the queue shuts down)."""
        self._later(seconds, task, job_id, 1, kwargs)

    def defer(self, seconds: float, task: str, key: str, **kwargs: str) -> None:
        """:meth:`enqueue_later` (a job per call: each finds the state of its time)."""
        self._later(seconds, task, uuid.uuid4().hex, 1, kwargs)

    def cancel(self, task: str, key: str) -> None:
        """Nothing: the job runs and finds nothing to do."""

    def enqueue_many(self, task: str, jobs: list[tuple[str, dict[str, str]]]) -> None:
        """Run each job soon on the pool."""
        for job_id, kwargs in jobs:
            self.enqueue(task, job_id, **kwargs)

    def _submit(
        self,
        context: contextvars.Context,
        task: str,
        job_id: str,
        attempt: int,
        kwargs: dict[str, str],
    ) -> None:
        # The job's log lines carry the request id of the API call that queued it.
        with self._lock:
            if self._closed:  # at-most-once: a retry due after shutdown is dropped
                log.warning("job %s dropped: the queue is shut down", task)
                return
            self.pool.submit(context.run, self._run, task, job_id, attempt, kwargs)

    def _run(self, task: str, job_id: str, attempt: int, kwargs: dict[str, str]) -> None:
        try:
            self.handlers[task](job_id=job_id, **kwargs)
        except RemoteTemporaryError as exc:
            if attempt >= EMBEDDED_MAX_ATTEMPTS:
                log.warning("job %s gave up after %d attempts: %s", task, attempt, exc.message)
                return
            delay = min(EMBEDDED_RETRY_MAX_S, EMBEDDED_RETRY_BASE_S * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
            self._later(delay, task, job_id, attempt + 1, kwargs)
        except Exception:
            log.exception("job %s failed", task)

    def _later(
        self, delay: float, task: str, job_id: str, attempt: int, kwargs: dict[str, str]
    ) -> None:
        context = contextvars.copy_context()

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._submit(context, task, job_id, attempt, kwargs)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def shutdown(self) -> None:
        """Stop taking work (retries waiting for their time are dropped); wait for running jobs."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


class Ticker:
    """Calls a function every ``interval`` seconds on a daemon thread (embedded beat)."""

    def __init__(self, interval: float, action: Callable[[], Any]) -> None:
        self.interval = interval
        self.action = action
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="beat", daemon=True)

    def start(self) -> None:
        """Begin ticking; the action decides what is due, so ticks every minute at most."""
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.wait(min(self.interval, 60.0)):
            try:
                self.action()
            except Exception:
                log.exception("periodic job failed")

    def stop(self) -> None:
        """Stop after the current tick."""
        self.stopped.set()
