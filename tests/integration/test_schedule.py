"""Beat's tick: the due accounts of every tenant, most overdue first, a batch per tick.

More accounts than one batch are all queued over consecutive ticks (none is starved by
accounts already queued), and accounts that are not due are never queued.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from email_service.services.runtime import Runtime
from email_service.services.sync import schedule
from email_service.store.models import Account, SyncState, utcnow
from email_service.store.states import AccountStatus, SyncRunState
from tests.conftest import TENANT_A, TENANT_B

BATCH = 40


@dataclass
class RecordingQueue:
    """The job queue port, keeping what was queued (the jobs themselves are not the point)."""

    jobs: list[dict[str, str]] = field(default_factory=list)

    def enqueue(self, task: str, job_id: str, **kwargs: str) -> None:
        self.jobs.append({"task": task, "job_id": job_id, **kwargs})

    def enqueue_later(self, seconds: float, task: str, job_id: str, **kwargs: str) -> None:
        self.enqueue(task, job_id, **kwargs)

    def defer(self, seconds: float, task: str, key: str, **kwargs: str) -> None:
        self.enqueue(task, key, **kwargs)

    def cancel(self, task: str, key: str) -> None:
        self.jobs[:] = [job for job in self.jobs if (job["task"], job["job_id"]) != (task, key)]

    def enqueue_many(self, task: str, jobs: list[tuple[str, dict[str, str]]]) -> None:
        for job_id, kwargs in jobs:
            self.enqueue(task, job_id, **kwargs)


def _accounts(runtime: Runtime, tenant: str, count: int, **sync: Any) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    with runtime.db.session() as session:
        for n, account_id in enumerate(ids):
            session.add(
                Account(
                    id=account_id,
                    tenant_id=tenant,
                    email=f"user{n}-{account_id.hex[:6]}@example.test",
                    username="u",
                    password_ciphertext="x",
                    password_scheme="fernet",
                    password_key_id="k",
                    imap_host="127.0.0.1",
                    imap_port=993,
                    imap_security="ssl",
                    smtp_host="127.0.0.1",
                    smtp_port=587,
                    smtp_security="starttls",
                    status=AccountStatus.ACTIVE,
                )
            )
        session.flush()
        if sync:
            for account_id in ids:
                session.add(
                    SyncState(
                        account_id=account_id,
                        tenant_id=tenant,
                        progress={},
                        failures=0,
                        messages_synced=0,
                        bytes_synced=0,
                        **sync,
                    )
                )
    return ids


def _tick(runtime: Runtime, queue: RecordingQueue) -> set[uuid.UUID]:
    before = len(queue.jobs)
    assert schedule.trigger_due(runtime) == len(queue.jobs) - before
    return {uuid.UUID(job["account_id"]) for job in queue.jobs[before:]}


def test_every_due_account_is_queued_over_ticks_most_overdue_first(
    runtime: Runtime, make_settings: Any
) -> None:
    runtime.settings = make_settings(sync_due_batch=BATCH, sync_interval_minutes=60)
    queue = RecordingQueue()
    runtime.queue = queue
    long_ago = utcnow() - timedelta(days=3)
    oldest = _accounts(runtime, TENANT_A, 10, state=SyncRunState.OK, started_at=long_ago)
    never = _accounts(runtime, TENANT_B, 50)
    recent = _accounts(
        runtime, TENANT_A, 5, state=SyncRunState.OK, started_at=utcnow() - timedelta(minutes=5)
    )
    refused = _accounts(runtime, TENANT_B, 5, state=SyncRunState.AUTH_FAILED, started_at=long_ago)
    first = _tick(runtime, queue)
    assert len(first) == BATCH
    assert set(never) - first  # never-synced accounts come first, and there are more of them
    second = _tick(runtime, queue)
    assert not first & second
    assert first | second == set(never) | set(oldest)  # all 60 due, in two ticks
    assert set(oldest) <= second  # the 3-day-old ones after those never synced
    assert _tick(runtime, queue) == set()  # queued ones are not queued again
    assert not (set(recent) | set(refused)) & {uuid.UUID(j["account_id"]) for j in queue.jobs}
    tenants = {j["account_id"]: j["tenant_id"] for j in queue.jobs}
    assert {tenants[str(a)] for a in never} == {TENANT_B}
    assert {tenants[str(a)] for a in oldest} == {TENANT_A}


def test_a_stale_queued_claim_is_due_again(runtime: Runtime, make_settings: Any) -> None:
    runtime.settings = make_settings(sync_due_batch=BATCH, sync_lock_ttl_seconds=60)
    queue = RecordingQueue()
    runtime.queue = queue
    long_ago = utcnow() - timedelta(days=1)
    stale = _accounts(
        runtime,
        TENANT_A,
        3,
        state=SyncRunState.QUEUED,
        queued_at=utcnow() - timedelta(minutes=10),
        started_at=long_ago,
    )
    live = _accounts(
        runtime, TENANT_A, 3, state=SyncRunState.QUEUED, queued_at=utcnow(), started_at=long_ago
    )
    assert _tick(runtime, queue) == set(stale)
    assert not set(live) & {uuid.UUID(j["account_id"]) for j in queue.jobs}
