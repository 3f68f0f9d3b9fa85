"""JobQueue implementations: Celery (Redis broker) and the embedded in-process runner."""

from __future__ import annotations

import contextvars
import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery

from email_service.errors import RemoteTemporaryError

log = logging.getLogger(__name__)
# Embedded retries mirror the Celery task's: doubling from 30 s, capped, a few attempts.
EMBEDDED_RETRY_BASE_S = 30.0
EMBEDDED_RETRY_MAX_S = 900.0
EMBEDDED_MAX_ATTEMPTS = 4


class CeleryQueue:
    """Sends tasks by name to the Celery broker."""

    def __init__(self, app: Celery) -> None:
        self.app = app

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
