#!/usr/bin/env python3
"""Beat's tick with many accounts: the due query and the queueing of a batch.

    .venv/bin/python bench/schedule/bench_schedule.py               # 10,000 accounts
    .venv/bin/python bench/schedule/bench_schedule.py -n 50000 --batch 2000

Creates a throwaway database on 127.0.0.1:5432 (user postgres, trust auth), migrates it,
inserts N active accounts over 20 tenants, and queues to Celery on a Redis database of
its own (127.0.0.1:6379/9, flushed before and after). Then:

* cold: every account is due (none ever synced); ticks run until none is due, and each
  tick's wall time is printed with the number it queued;
* steady: each account's last sync is spread over the last interval and a bit more, so a
  tick finds the ~1/60 that came due; its time is printed.

The target is a tick of <= 1 s and every account queued within SYNC_INTERVAL_MINUTES
(ticks needed <= ticks per interval). The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import redis
from celery import Celery
from sqlalchemy import insert, update

from email_service.config import Settings
from email_service.jobs.queues import CeleryQueue
from email_service.security.crypto import generate_key
from email_service.services.runtime import Runtime
from email_service.services.sync import schedule
from email_service.store import migrate, scope
from email_service.store.models import Account, SyncState, utcnow
from email_service.store.states import SyncRunState

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER = "redis://127.0.0.1:6379/9"
TICK_SECONDS = 60  # beat's schedule for sync_due_accounts (jobs/__init__.py)


def main() -> None:
    args = _args()
    name = f"es_schedbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    broker = redis.Redis.from_url(BROKER)
    broker.flushdb()
    try:
        runtime = _runtime(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", args)
        migrate.upgrade(runtime.db.engine)
        with scope.operator_scope("bench: accounts of many tenants"):  # as beat's query is
            _fill(runtime, args.accounts)
            _cold(runtime, args)
            _steady(runtime, args)
        runtime.db.dispose()
    finally:
        broker.flushdb()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--accounts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="SYNC_DUE_BATCH")
    parser.add_argument("--interval", type=int, default=60, help="SYNC_INTERVAL_MINUTES")
    return parser.parse_args()


def _runtime(url: str, args: argparse.Namespace) -> Runtime:
    settings = Settings(
        _env_file=None,
        flask_env="development",
        database_url=url,
        redis_url=BROKER,
        jwt_secret="bench-" + "k" * 40,
        encryption_key=[generate_key()],
        data_dir=Path("/tmp/es-schedbench"),
        sync_due_batch=args.batch,
        sync_interval_minutes=args.interval,
    )
    runtime = Runtime.build(settings)
    runtime.queue = CeleryQueue(Celery("bench", broker=BROKER))
    return runtime


def _fill(runtime: Runtime, count: int) -> None:
    started = time.perf_counter()
    with runtime.db.session() as session:
        session.execute(
            insert(Account),
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": f"tenant-{n % 20}",
                    "email": f"user{n}@example.test",
                    "username": f"user{n}",
                    "password_ciphertext": "x",
                    "password_scheme": "fernet",
                    "password_key_id": "k",
                    "imap_host": "imap.example.test",
                    "imap_port": 993,
                    "imap_security": "ssl",
                    "smtp_host": "smtp.example.test",
                    "smtp_port": 587,
                    "smtp_security": "starttls",
                    "status": "active",
                    "created_at": utcnow(),
                    "updated_at": utcnow(),
                }
                for n in range(count)
            ],
        )
    print(f"{count:,} accounts inserted in {time.perf_counter() - started:.1f} s")


def _tick(runtime: Runtime) -> tuple[int, float]:
    started = time.perf_counter()
    queued = schedule.trigger_due(runtime)
    return queued, time.perf_counter() - started


def _cold(runtime: Runtime, args: argparse.Namespace) -> None:
    print(f"\n## cold: every account due (batch {args.batch:,})\n")
    print("| tick | queued | tick s |\n|---:|---:|---:|")
    times, total, tick = [], 0, 0
    while True:
        queued, seconds = _tick(runtime)
        if not queued:
            break
        tick += 1
        total += queued
        times.append(seconds)
        print(f"| {tick} | {queued:,} | {seconds:.3f} |")
    per_interval = args.interval * 60 // TICK_SECONDS
    print(
        f"\nall {total:,} queued in {tick} ticks (ticks per interval: {per_interval}; "
        f"{'met' if tick <= per_interval else 'NOT met'}); tick median "
        f"{statistics.median(times):.3f} s, max {max(times):.3f} s (target <= 1 s: "
        f"{'met' if max(times) <= 1 else 'NOT met'})"
    )


def _steady(runtime: Runtime, args: argparse.Namespace) -> None:
    span = args.interval * 60 + TICK_SECONDS
    now = utcnow()
    with runtime.db.session() as session:
        ids = list(
            session.scalars(SyncState.__table__.select().with_only_columns(SyncState.account_id))
        )
        session.execute(
            update(SyncState),
            [
                {
                    "account_id": account_id,
                    "state": SyncRunState.OK,
                    "started_at": now - timedelta(seconds=random.uniform(0, span)),
                }
                for account_id in ids
            ],
        )
    samples = [_tick(runtime) for _ in range(3)]
    print(f"\n## steady: last syncs spread over {span // 60} minutes\n")
    print("| tick | queued | tick s |\n|---:|---:|---:|")
    for n, (queued, seconds) in enumerate(samples, 1):
        print(f"| {n} | {queued:,} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
