#!/usr/bin/env python3
"""Push: from an IMAP APPEND on Dovecot to the message in our store, with nobody
triggering a sync; one watcher holding 1,000 accounts; takeover after ``kill -9``.

    .venv/bin/python bench/push/bench_push.py [--messages 200] [--accounts 1000]

Starts, in temporary directories, the test Dovecot (``tests/servers``, the project's
``deploy/`` config plus the process limits 1,000 IDLE clients need, ECOSYSTEM.md), a
private redis-server, a PostgreSQL database on 127.0.0.1:5432, ``email-service serve``,
``email-service worker`` (Celery, ``--worker-concurrency`` processes: syncs mostly wait
on PostgreSQL and IMAP round trips) and ``email-service watch`` processes.

1. Latency, one account: APPEND to INBOX, then poll ``GET /api/messages`` every 10 ms
   until the message is listed; p50/p95/max over ``--messages`` appends, one at a time.
2. One watcher with ``--accounts`` accounts (as many Dovecot users), all in IDLE: its RSS,
   its CPU while idle (``--idle-seconds``), then latency p50/p95 while ``--rate``
   messages/s arrive across random accounts for ``--load-seconds`` (APPEND to the row in
   the database, polled every 25 ms).
3. Takeover: a second watcher joins (each settles on half); the first is killed with
   SIGKILL; seconds until every account's lease is the survivor's, and until the
   survivor has every account in IDLE again. The lease is WATCH_LEASE_SECONDS (30).
"""

from __future__ import annotations

import argparse
import http.client
import imaplib
import json
import os
import random
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from email_service.security import tokens  # noqa: E402
from email_service.store import scope  # noqa: E402
from tests.conftest import JWT_SECRET  # noqa: E402
from tests.e2e.push_support import PushStack, message, wait_for  # noqa: E402
from tests.servers.dovecot import DovecotServer  # noqa: E402
from tests.servers.ports import free_port  # noqa: E402
from tests.servers.postgres import PG_ADMIN_URL  # noqa: E402
from tests.servers.process import kill_tree as stop  # noqa: E402
from tests.servers.redis import RedisServer  # noqa: E402
from tests.servers.service import BIN, wait_http  # noqa: E402

TENANT = "bench-push"
# What 1,000 IDLE clients need of Dovecot 2.3 (ECOSYSTEM.md): an imap process each, and
# login processes that serve many clients.
MANY_CLIENTS = """
default_process_limit = 2500
default_client_limit = 6000
service imap {
  process_limit = 2500
}
service imap-login {
  service_count = 0
  client_limit = 2500
}
"""


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


class BigDovecot(DovecotServer):
    """The test Dovecot with room for thousands of IDLE clients."""

    def render_config(self) -> str:
        return super().render_config() + MANY_CLIENTS


def room_for_idle(clients: int) -> None:
    """Each IDLE session's imap process takes an inotify instance (all under the one mail
    user). Past ``max_user_instances`` (128 by default) Dovecot falls back to checking every
    mailbox_idle_check_interval (30 s): the latency measured would be that interval's."""
    want = 2 * clients + 256
    have = int(INOTIFY_INSTANCES.read_text())
    if have < want:
        try:
            INOTIFY_INSTANCES.write_text(str(want))
        except OSError:
            print(f"  fs.inotify.max_user_instances is {have} (< {want}): run as root")
            return
    print(f"  fs.inotify.max_user_instances {max(have, want)}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"n={len(values)} p50={statistics.median(values) * 1000:.0f} ms "
        f"p95={pct(values, 0.95) * 1000:.0f} ms max={max(values) * 1000:.0f} ms"
    )


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def append(dovecot: DovecotServer, user: Any, raw: bytes) -> None:
    client = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
    try:
        client.login(user.email, user.password)
        client.append("INBOX", None, None, raw)
    finally:
        client.logout()


def prime(dovecot: DovecotServer, user: Any) -> None:
    """Open every folder once: Dovecot makes the mailbox, its autocreated folders and their
    indexes at first use, and NOTIFY would report each of those as a change."""
    client = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
    try:
        client.login(user.email, user.password)
        _typ, lines = client.list()
        for line in lines:
            if not isinstance(line, bytes):
                continue
            name = line.decode().rsplit(' "/" ', 1)[-1].strip('"')
            client.select(f'"{name}"', readonly=True)
    finally:
        client.logout()


def drained(stack: PushStack) -> bool:
    """No queued job and no mark waiting for its sync."""
    import redis

    client: Any = redis.Redis.from_url(stack.redis_url)
    return client.llen("celery") == 0 and not list(client.scan_iter("push:pending:*", count=1000))


def api_latency(stack: PushStack, dovecot: DovecotServer, n: int) -> list[float]:
    user = dovecot.add_user(f"latency-{uuid.uuid4().hex[:8]}@example.test", "bench-pw-123")
    account = stack.add_account(TENANT, dovecot, user)
    port = free_port()
    env = {**stack.env, "FLASK_PORT": str(port), "RATE_LIMIT_ENABLED": "false"}
    env.update(GUNICORN_WORKERS="1", GUNICORN_THREADS="4")
    api = stack._spawn("serve", "serve", **env)
    wait_http(f"http://127.0.0.1:{port}/health")
    headers = {
        "Authorization": f"Bearer {tokens.mint(JWT_SECRET, [TENANT])}",
        "X-Tenant-ID": TENANT,
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def listed(subject: str) -> bool:
        conn.request("GET", f"/api/messages?account_id={account}&limit=5", headers=headers)
        body = json.loads(conn.getresponse().read())
        return any(item["subject"] == subject for item in body["items"])

    watcher = stack.watcher()
    wait_for(lambda: stack.metric(watcher, "imap_push_idle_connections") == 1, "IDLE", 60)
    wait_for(lambda: drained(stack), "first sync", 120)
    client = imaplib.IMAP4(dovecot.host, dovecot.imap_port)
    client.login(user.email, user.password)
    out: list[float] = []
    for i in range(n):
        subject = f"latency {i} {uuid.uuid4().hex[:6]}"
        raw = message(subject)
        started = time.monotonic()
        client.append("INBOX", None, None, raw)
        while not listed(subject):
            time.sleep(0.01)
        out.append(time.monotonic() - started)
    client.logout()
    stop(watcher)
    stop(api)
    return out


def many_accounts(stack: PushStack, dovecot: DovecotServer, args: argparse.Namespace) -> None:
    users = [
        dovecot.add_user(f"u{i:05d}-{uuid.uuid4().hex[:4]}@example.test", "bench-pw-123")
        for i in range(args.accounts)
    ]
    with ThreadPoolExecutor(8) as pool:  # Dovecot creates the Maildir and the special-use
        list(pool.map(lambda u: prime(dovecot, u), users))  # folders at first use: not timed
    for user in users:
        stack.add_account(TENANT, dovecot, user)
    started = time.monotonic()
    watcher = stack.watcher()
    wait_for(
        lambda: stack.metric(watcher, "imap_push_idle_connections") >= args.accounts,
        f"{args.accounts} IDLE connections",
        600,
    )
    print(f"  {args.accounts} accounts in IDLE after {time.monotonic() - started:.1f} s")
    wait_for(lambda: drained(stack), "the first syncs", 1800)
    print(f"  first syncs of every account done after {time.monotonic() - started:.1f} s")
    time.sleep(3)
    cpu0, t0 = proc_cpu_s(watcher.pid), time.monotonic()
    time.sleep(args.idle_seconds)
    idle_cpu = (proc_cpu_s(watcher.pid) - cpu0) / (time.monotonic() - t0) * 100
    rss = proc_rss_mb(watcher.pid)
    print(f"  watcher RSS {rss:.1f} MB; idle CPU {idle_cpu:.2f} % of a core")
    lat = load(stack, dovecot, users, args)
    print(f"  APPEND -> stored at {args.rate}/s across {args.accounts} accounts: {summary(lat)}")
    print(f"  watcher RSS under load {proc_rss_mb(watcher.pid):.1f} MB")
    takeover(stack, watcher, args.accounts + (1 if args.messages else 0))


def load(
    stack: PushStack, dovecot: DovecotServer, users: list[Any], args: argparse.Namespace
) -> list[float]:
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    lock = threading.Lock()
    done = threading.Event()
    dsn = stack.runtime.settings.database_url or ""

    def poll() -> None:
        with psycopg.connect(dsn, autocommit=True) as db:
            while not done.is_set():
                with lock:
                    waiting = [s for s in sent if s not in seen]
                if waiting:
                    rows = db.execute(
                        "SELECT subject FROM email_message WHERE subject = ANY(%s)", (waiting,)
                    ).fetchall()
                    now = time.monotonic()
                    with lock:
                        for (subject,) in rows:
                            seen.setdefault(subject, now)
                time.sleep(0.025)

    def one(subject: str) -> None:
        with lock:
            sent[subject] = time.monotonic()
        append(dovecot, random.choice(users), message(subject))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    total = int(args.rate * args.load_seconds)
    begin = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        for k in range(total):
            time.sleep(max(0.0, begin + k / args.rate - time.monotonic()))
            pool.submit(one, f"load {k} {uuid.uuid4().hex[:6]}")
    wait_for(lambda: len(seen) == total, "every loaded message", 300)
    done.set()
    return [seen[s] - sent[s] for s in sent]


def takeover(stack: PushStack, first: Any, accounts: int) -> None:
    second = stack.watcher()

    def count(proc: Any, held: list[str]) -> int:
        return sum(1 for h in held if f":{proc.pid}:" in h)

    def split() -> int | None:
        held = list(stack.holders().values())
        mine, theirs = count(first, held), count(second, held)
        settled = (
            len(held) == accounts
            and abs(mine - theirs) <= 1
            and stack.metric(first, "imap_push_idle_connections") == mine
            and stack.metric(second, "imap_push_idle_connections") == theirs
        )
        return mine if settled else None

    killed = wait_for(split, "an even split", 600)
    time.sleep(2)
    killed_at = time.monotonic()
    stack.kill9(first)

    def survivor_holds_all() -> bool:
        held = list(stack.holders().values())
        return len(held) == accounts and count(second, held) == accounts

    wait_for(survivor_holds_all, "the survivor to hold every lease", 600)
    leased = time.monotonic() - killed_at
    wait_for(
        lambda: stack.metric(second, "imap_push_idle_connections") == accounts,
        "every account in IDLE again",
        600,
    )
    idle = time.monotonic() - killed_at
    lease_s = int(stack.env.get("WATCH_LEASE_SECONDS", "30"))
    print(
        f"3. takeover after kill -9 of a watcher holding {killed} of {accounts} accounts "
        f"(lease {lease_s} s): every lease taken after {leased:.1f} s, "
        f"every account in IDLE again after {idle:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--worker-concurrency", type=int, default=6)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the stack on the way out
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    name = f"es_bench_push_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    pg_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="bench-push-"))
    tmp.chmod(0o755)
    (tmp / "stack").mkdir()
    dovecot, redis_server = BigDovecot(tmp / "dovecot"), RedisServer(tmp / "redis")
    stack: PushStack | None = None
    try:
        dovecot.start()
        redis_server.start()
        stack = PushStack(tmp / "stack", pg_url, redis_server.url, SYNC_PARSE_PROCESSES="0")
        stack.worker(concurrency=args.worker_concurrency)
        print(f"push bench (Dovecot {dovecot.imap_port}, {BIN / 'email-service'})")
        room_for_idle(args.accounts * 2)  # two watchers during the takeover
        with scope.operator_scope("bench: registers and counts every account's mail"):
            if args.messages:
                print("1. APPEND -> listed by GET /api/messages, one account, one at a time")
                print(f"  {summary(api_latency(stack, dovecot, args.messages))}")
            print(f"2. one watcher, {args.accounts} accounts")
            many_accounts(stack, dovecot, args)
    finally:
        if stack is not None:
            stack.close()
        redis_server.stop()
        dovecot.stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
