"""The port through which use cases hand work to background workers.

``email_service.jobs`` provides the implementations (Celery, or the embedded in-process
runner); ``app.py`` and the worker wire one into the Runtime.
"""

from __future__ import annotations

from typing import Protocol


class JobQueue(Protocol):
    """Somewhere to put background work. Call only after the rows it needs are committed."""

    def enqueue(self, task: str, job_id: str, **kwargs: str) -> None:
        """Queue ``task(**kwargs)`` under ``job_id``."""

    def enqueue_later(self, seconds: float, task: str, job_id: str, **kwargs: str) -> None:
        """Queue ``task(**kwargs)`` under ``job_id``, to run ``seconds`` from now."""

    def defer(self, seconds: float, task: str, key: str, **kwargs: str) -> None:
        """Queue ``task(**kwargs)`` ``seconds`` from now, once for ``key`` while it waits
        (a second call meanwhile changes nothing); :meth:`cancel` may drop it before."""

    def cancel(self, task: str, key: str) -> None:
        """Drop the job :meth:`defer` holds for ``key``, if it is still waiting (a queue that
        cannot drop it lets it run: it must find nothing left to do)."""

    def enqueue_many(self, task: str, jobs: list[tuple[str, dict[str, str]]]) -> None:
        """Queue ``task`` once per ``(job_id, kwargs)``, in one go where the queue can."""
