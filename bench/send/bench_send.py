#!/usr/bin/env python3
"""Sending throughput: our API + Celery worker into a local Postfix, next to Postfix's own
``smtp-source`` load generator against the same Postfix, in the same run.

    sudo .venv/bin/python bench/send/bench_send.py -n 1000 -c 8

Starts, in temporary directories, the test Dovecot and Postfix (``tests/servers``, the
project's ``deploy/`` configs; Postfix delivers to Dovecot over LMTP), a PostgreSQL
database on 127.0.0.1:5432, ``email-service serve`` (Gunicorn) and ``email-service
worker`` (Celery, Redis db 11 as broker). Root is needed for Postfix's master.

1. ``smtp-source -d -s C -m N -l SIZE`` into Postfix's SMTP port: messages/s until the
   last 250 (connections reused, C sessions).
2. The floor: a Celery worker with ours' settings (prefork, concurrency C, JSON, late acks,
   prefetch 1) whose task does nothing but hand a prebuilt message to Postfix over a
   reused smtplib connection (``floor_tasks.py``); N tasks published in a loop. Then
   again with the copy to the sender's Sent folder (IMAP APPEND on a kept connection)
   that ours also makes. No API, no database: ours cannot do better than this.
3. Ours: C client threads each POST /api/compose then POST /api/compose/send/{id} (a
   body of SIZE bytes); the worker (concurrency C, SMTP connections reused) submits to
   the same port. Messages/s from the first request until every outbox row is ``sent``
   (Postfix said 250), and until every Sent copy is in Dovecot too.
4. Ours again with one request per message: POST /api/send.
5. Optionally (``--submission``) ours again over the submission port: STARTTLS + AUTH.

The Postfix queue drains (delivery to Dovecot) before each run. Rate limits are off:
this measures sending, not the limiter. The ratios printed are floor / smtp-source,
ours / smtp-source, and ours (until every Sent copy is stored) / the floor that also
copies to Sent.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from email_service.security import tokens  # noqa: E402
from email_service.security.crypto import generate_key  # noqa: E402
from tests.servers.dovecot import DovecotServer  # noqa: E402
from tests.servers.ports import free_port  # noqa: E402
from tests.servers.postfix import PostfixServer  # noqa: E402
from tests.servers.service import wait_http  # noqa: E402

BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
FLOOR_BROKER = os.environ.get("BENCH_FLOOR_REDIS_URL", "redis://127.0.0.1:6379/12")
HERE = Path(__file__).resolve().parent
JWT_SECRET = "bench-jwt-" + "s" * 40
TENANT = "bench"
# A finished run leaves Postfix delivering; wait this long at most for its queue to drain.
DRAIN_TIMEOUT_S = 600


@contextmanager
def mail_servers() -> Iterator[tuple[DovecotServer, PostfixServer]]:
    """The test Dovecot and Postfix, in directories removed afterwards."""
    roots = [Path(tempfile.mkdtemp(prefix=f"bench-send-{n}-")) for n in ("dovecot", "postfix")]
    dovecot = DovecotServer(roots[0])
    dovecot.start()
    postfix = PostfixServer(roots[1], dovecot)
    try:
        postfix.start()
        yield dovecot, postfix
    finally:
        postfix.stop()
        dovecot.stop()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def database() -> Iterator[str]:
    name = f"bench_send_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drain(postfix: PostfixServer) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while not postfix.queue_is_empty():
        if time.monotonic() > deadline:
            raise SystemExit("Postfix did not drain its queue")
        time.sleep(0.2)


def smtp_source(postfix: PostfixServer, args: argparse.Namespace, rcpt: str) -> float:
    """messages/s of smtp-source into Postfix's SMTP port."""
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    command = [
        binary, "-d", "-s", str(args.concurrency), "-m", str(args.messages),
        "-l", str(args.size), "-f", "loadgen@example2.test", "-t", rcpt,
        "-M", "bench.example.test", f"{postfix.host}:{postfix.smtp_port}",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=DRAIN_TIMEOUT_S)
    return args.messages / (time.perf_counter() - started)


class Service:
    """``email-service serve`` and ``worker`` processes on one database and broker."""

    def __init__(
        self, workdir: Path, pg_url: str, args: argparse.Namespace, dovecot: DovecotServer
    ) -> None:
        redis.Redis.from_url(BROKER).flushdb()
        self.pg_url = pg_url
        self.imap_port = dovecot.imap_port
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "GUNICORN_"))},
            "FLASK_ENV": "development",
            "FLASK_HOST": "127.0.0.1",
            "FLASK_PORT": str(self.port),
            "DATA_DIR": str(workdir / "data"),
            "LOG_DIR": str(workdir / "logs"),
            "DATABASE_URL": pg_url,
            "REDIS_URL": BROKER,
            "JWT_SECRET": JWT_SECRET,
            "ENCRYPTION_KEY": generate_key(),
            "ALLOWED_MAIL_HOSTS": "127.0.0.1/8",
            "RATE_LIMIT_ENABLED": "false",
            "GUNICORN_WORKERS": str(args.api_workers),
            "GUNICORN_THREADS": str(args.concurrency),
            "LOG_LEVEL": "WARNING",
            "SMTP_POOL_SIZE": str(args.concurrency),
            "MAIL_CA_FILE": str(dovecot.ca_file),  # the test CA, for --submission
            **dict(item.split("=", 1) for item in args.env),
        }
        subprocess.run([str(BIN / "email-service"), "migrate"], env=self.env, check=True)
        log = (workdir / "service.log").open("ab")
        self.procs = [
            subprocess.Popen(
                [str(BIN / "email-service"), *command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for command in (["serve"], ["worker", "--concurrency", str(args.concurrency)])
        ]
        wait_http(f"http://127.0.0.1:{self.port}/health", self.procs[0])
        self.headers = {
            "Authorization": f"Bearer {tokens.mint(JWT_SECRET, [TENANT])}",
            "X-Tenant-ID": TENANT,
            "Content-Type": "application/json",
        }
        self.local = threading.local()

    def request(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        """One API call on this thread's keep-alive connection (re-opened once if closed)."""
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        payload = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.local.conn = conn
            try:
                conn.request(method, path, payload, headers)
                response = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                # Gunicorn closed an idle keep-alive connection; the send carries an
                # Idempotency-Key, so asking again cannot queue a message twice.
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data) if data else None

    def counts(self) -> tuple[int, int]:
        """(rows sent, rows whose Sent copy is settled)."""
        with psycopg.connect(self.pg_url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'sent'),"
                " count(*) FILTER (WHERE state = 'sent' AND sent_copy <> 'pending')"
                " FROM outbox"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by the API and by the worker (each with its children)."""
        return self._cpu(self.procs[0].pid), self._cpu(self.procs[1].pid)

    @staticmethod
    def _cpu(group: int) -> float:
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:  # field 5 of stat: the process group
                total += int(fields[11]) + int(fields[12])  # utime + stime, in ticks
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in self.procs:
            proc.wait(timeout=30)


def ours(
    service: Service, args: argparse.Namespace, rcpt: str, count: int, one_request: bool = False
) -> tuple[float, float]:
    """(messages/s until all sent, until all Sent copies are stored): compose then send,
    or ``one_request`` (POST /api/send)."""
    before_sent, before_done = service.counts()
    body = {"to": [rcpt], "subject": "bench", "body": "x" * (args.size - 1) + "\n"}

    def one(_i: int) -> None:
        if one_request:
            service.request("POST", "/api/send", body, key=uuid.uuid4().hex)
            return
        draft = service.request("POST", "/api/compose", body)
        service.request("POST", f"/api/compose/send/{draft['id']}", key=draft["id"])

    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(one, range(count)))
    requests_s = time.perf_counter() - started
    what = "POST /api/send" if one_request else "compose+send"
    print(f"  ({count} {what} requests answered in {requests_s:.2f} s)", file=sys.stderr)
    sent_at = done_at = None
    while done_at is None:
        sent, done = service.counts()
        now = time.perf_counter()
        if sent_at is None and sent - before_sent >= count:
            sent_at = now
        if done - before_done >= count:
            done_at = now
        time.sleep(0.01)
    assert sent_at is not None
    return count / (sent_at - started), count / (done_at - started)


class Floor:
    """A Celery worker whose task only sends (``floor_tasks.py``), with ours' settings."""

    def __init__(
        self, workdir: Path, args: argparse.Namespace, dovecot: DovecotServer, sender: Any
    ) -> None:
        self.redis = redis.Redis.from_url(FLOOR_BROKER)
        self.redis.flushdb()
        self.sender = sender.email
        env = {
            **os.environ,
            "BENCH_FLOOR_REDIS_URL": FLOOR_BROKER,
            "PYTHONPATH": str(HERE),
            "FLOOR_IMAP_HOST": dovecot.host,
            "FLOOR_IMAP_PORT": str(dovecot.imap_port),
            "FLOOR_IMAP_USER": sender.email,
            "FLOOR_IMAP_PASSWORD": sender.password,
        }
        self.proc = subprocess.Popen(
            [str(BIN / "celery"), "-A", "floor_tasks:app", "--quiet", "worker",
             "--concurrency", str(args.concurrency), "--loglevel", "WARNING"],
            env=env,
            cwd=HERE,
            stdout=(workdir / "floor.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        sys.path.insert(0, str(HERE))
        import floor_tasks

        self.tasks = floor_tasks

    def run(
        self, postfix: PostfixServer, rcpt: str, count: int, size: int, sent_copy: bool
    ) -> float:
        """messages/s from the first task published until Postfix accepted the last."""
        self.redis.set(self.tasks.DONE_KEY, 0)
        sender = self.sender
        head = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: bench\r\n"
        body = "x" * (size - 1) + "\r\n"
        started = time.perf_counter()
        for n in range(count):
            message = f"{head}Message-ID: <floor-{uuid.uuid4().hex}-{n}@example.test>\r\n\r\n"
            self.tasks.send.delay(
                postfix.host, postfix.smtp_port, sender, rcpt, message + body, sent_copy
            )
        while int(self.redis.get(self.tasks.DONE_KEY) or 0) < count:
            if self.proc.poll() is not None:
                raise SystemExit("the floor's worker exited")
            time.sleep(0.01)
        return count / (time.perf_counter() - started)

    def cpu_seconds(self) -> float:
        return Service._cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
        self.proc.wait(timeout=30)


def register(service: Service, user: Any, port: int, security: str) -> None:
    service.request(
        "POST",
        "/api/accounts",
        {
            "email": user.email,
            "password": user.password,
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": security,
            "imap_host": "127.0.0.1",
            "imap_port": service.imap_port,
            "imap_security": "none",
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("-l", "--size", type=int, default=1024, help="body bytes")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--submission", action="store_true", help="also via STARTTLS+AUTH")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the service")
    args = parser.parse_args()
    with mail_servers() as (dovecot, postfix), database() as pg_url:
        sender = dovecot.add_user("sender@example.test", "bench-sender")
        rcpt = dovecot.add_user("rcpt@example.test", "bench-rcpt").email
        workdir = Path(tempfile.mkdtemp(prefix="bench-send-service-"))
        service = Service(workdir, pg_url, args, dovecot)
        floor = Floor(workdir, args, dovecot, sender)
        try:
            register(service, sender, postfix.smtp_port, "none")
            ours(service, args, rcpt, max(20, args.concurrency * 2))  # warm-up
            floor.run(postfix, rcpt, max(20, args.concurrency * 2), args.size, True)  # warm-up
            drain(postfix)
            baseline = smtp_source(postfix, args, rcpt)
            drain(postfix)
            floors = {}
            for sent_copy in (False, True):
                floor_cpu = floor.cpu_seconds()
                rate = floor.run(postfix, rcpt, args.messages, args.size, sent_copy)
                cpu_ms = (floor.cpu_seconds() - floor_cpu) * 1000 / args.messages
                floors[sent_copy] = (rate, cpu_ms)
                drain(postfix)
            floor.stop()
            runs = {}
            for one_request in (False, True):
                api_cpu, worker_cpu = service.cpu_seconds()
                rates = ours(service, args, rcpt, args.messages, one_request)
                api_after, worker_after = service.cpu_seconds()
                api_ms = (api_after - api_cpu) * 1000 / args.messages
                worker_ms = (worker_after - worker_cpu) * 1000 / args.messages
                runs[one_request] = (*rates, api_ms, worker_ms)
                drain(postfix)
            print(f"messages: {args.messages}, body {args.size} B, concurrency {args.concurrency}")
            print(f"smtp-source -d (SMTP port)      {baseline:9.1f} msg/s")
            for sent_copy, label in ((False, "sends"), (True, "sends, copies to Sent")):
                rate, cpu_ms = floors[sent_copy]
                print(
                    f"floor: Celery task that only {label}: {rate:.1f} msg/s (ratio "
                    f"{rate / baseline:.2f}; worker CPU {cpu_ms:.1f} ms per message)"
                )
            floor_copy = floors[True][0]
            for one_request, label in ((False, "compose + send"), (True, "POST /api/send")):
                sent_rate, done_rate, api_ms, worker_ms = runs[one_request]
                print(f"ours ({label}), API + worker:")
                print(f"  accepted by Postfix           {sent_rate:9.1f} msg/s")
                print(
                    f"  incl. Sent copy (IMAP)        {done_rate:9.1f} msg/s (ratio to the floor "
                    f"with Sent copy {done_rate / floor_copy:.2f}; target >= 0.6)"
                )
                print(
                    f"  CPU, API / worker             {api_ms:6.1f} / {worker_ms:.1f} ms a message"
                )
                print(f"  ratio to smtp-source          {sent_rate / baseline:9.2f}")
            print(f"CPUs here, load average          {os.cpu_count():6d}, {os.getloadavg()[0]:.1f}")
            if args.submission:
                service.request("DELETE", "/api/accounts/" + _account_id(service))
                register(service, sender, postfix.submission_port, "starttls")
                sub_rate, _ = ours(service, args, rcpt, args.messages)
                drain(postfix)
                print(f"ours via submission (TLS+AUTH)  {sub_rate:9.1f} msg/s")
        finally:
            floor.stop()
            service.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def _account_id(service: Service) -> str:
    return str(service.request("GET", "/api/accounts")["items"][0]["id"])


if __name__ == "__main__":
    main()
