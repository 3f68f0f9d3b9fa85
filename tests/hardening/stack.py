"""The running service as the world sees it: `email-service serve` (Gunicorn) and a Celery
worker as subprocesses, over a real PostgreSQL database and a Redis server of our own.

Also the servers a fault test restarts under load, which must never be the shared ones:
a Redis on a free port and a throwaway PostgreSQL cluster run as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from email_service.config import Settings
from email_service.security import tokens
from email_service.security.crypto import generate_key
from email_service.store import migrate
from email_service.store.db import Database
from tests.conftest import JWT_SECRET, PG_ADMIN_URL
from tests.e2e.conftest import BIN, base_env, free_port
from tests.servers.process import Reaper

# Issuer and audience every hardening service requires (the JWT matrix checks them).
JWT_AUDIENCE = "email-service-hardening"
JWT_ISSUER = "https://issuer.hardening.test"
# pytest-xdist groups: the tests that use the shared ``service`` fixture run on one worker
# (a start costs some twenty seconds here), the ones that start their own on the other.
SERVICE_GROUP = pytest.mark.xdist_group("hardening-service")
OWN_GROUP = pytest.mark.xdist_group("hardening-own")
# Short timeouts and leases, so that faults resolve in seconds, not minutes.
FAST = {
    "IMAP_TIMEOUT": "3",
    "SMTP_TIMEOUT": "3",
    "SYNC_LOCK_TTL_SECONDS": "3",
    "SEND_LEASE_SECONDS": "2",
    "SEND_RETRY_BASE_SECONDS": "0.2",
    "SEND_RETRY_MAX_SECONDS": "1",
}
# Processes start in a few seconds; a loaded 2-core machine gets generous slack.
START_TIMEOUT_S = 60
# A readiness poll that takes longer than this means "not ready".
POLL_TIMEOUT_S = 3


def token(*tenants: str, **claims: Any) -> str:
    """A valid token for the hardening services (with their audience and issuer)."""
    claims.setdefault("audience", JWT_AUDIENCE)
    claims.setdefault("issuer", JWT_ISSUER)
    return tokens.mint(JWT_SECRET, list(tenants), **claims)


def headers(tenant: str) -> dict[str, str]:
    """Authorization and tenant headers acting as ``tenant``."""
    return {"Authorization": f"Bearer {token(tenant)}", "X-Tenant-ID": tenant}


def wait_until(predicate: Any, what: str, timeout: float = START_TIMEOUT_S) -> Any:
    """Poll ``predicate`` until it returns something true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# A reaper per process group we start: it kills the group if this test process dies
# without stopping it (tests/servers/process.py), so nothing outlives an interrupted run.
_REAPERS: dict[int, Reaper] = {}


def guard(proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """Have ``proc``'s process group killed if this test process dies first."""
    _REAPERS[proc.pid] = Reaper(proc.pid)
    return proc


def _release(pgid: int) -> None:
    reaper = _REAPERS.pop(pgid, None)
    if reaper is not None:
        reaper.release()


def kill_tree(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal the process group; SIGKILL what is left after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _release(proc.pid)


def group_pids(pgid: int) -> set[int]:
    """Live processes of a process group (a worker's pool children included)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def guard_popen(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, guarded by a reaper."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, start_new_session=True, **options)
    guard(proc)
    return proc


# ---- databases -----------------------------------------------------------------------


@contextlib.contextmanager
def pg_database(admin_url: str = PG_ADMIN_URL, prefix: str = "es_hard") -> Iterator[str]:
    """A fresh, empty database on ``admin_url``'s server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_problem(admin_url: str = PG_ADMIN_URL) -> str | None:
    """Why PostgreSQL cannot be used, or None."""
    try:
        with psycopg.connect(admin_url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {admin_url}: {str(exc).strip().splitlines()[0]}"
    return None


class RedisServer:
    """A redis-server of our own on a free loopback port (restartable on the same port)."""

    def __init__(self, root: Path, persist: bool = False) -> None:
        self.root = root
        self.port = free_port()
        self.persist = persist  # append-only file, fsync'd: queued tasks survive a restart
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def missing() -> str | None:
        """Why no redis-server can run here, or None."""
        if shutil.which("redis-server") is None:
            return "redis-server is not installed (Debian package redis-server)"
        return None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and wait for PONG."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "redis.log").open("ab")
        self.proc = guard_popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)),
                *("--save", "", "--appendonly", "yes" if self.persist else "no"),
                *("--appendfsync", "always"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.ping, f"redis on {self.port}", timeout=20)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            kill_tree(self.proc, sig, timeout=10)
            self.proc = None


class PgCluster:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl as ``postgres``) on a free port.

    Never the system cluster: a fault test stops and starts this one under load.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="es-hard-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "pg.log"
        self._reaper: Reaper | None = None

    @staticmethod
    def missing() -> str | None:
        """Why no cluster can be made here, or None."""
        if not (Path(_pg_bin("initdb")).exists() and Path(_pg_bin("pg_ctl")).exists()):
            return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if os.geteuid() != 0:
            return "a throwaway PostgreSQL cluster is started as the postgres user: run as root"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres system user"
        return None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(argv)],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def init(self) -> None:
        """initdb with trust auth on loopback only."""
        owner = pwd.getpwnam("postgres")
        os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o700)
        self._as_postgres(
            _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        """pg_ctl start and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories="
            f"{self.root} -c fsync=off -c max_connections=200"
        )
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"'{options}'", "start",
        )  # fmt: skip
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        self._reaper = Reaper(os.getpgid(postmaster))  # the postmaster leads its own group

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (``fast`` cuts the sessions, ``immediate`` is a crash)."""
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )
        if self._reaper is not None:
            self._reaper.release()
            self._reaper = None

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def sqlalchemy_url(database_url: str) -> str:
    """DATABASE_URL as the service's engine spells it (psycopg 3 driver)."""
    settings = Settings(_env_file=None, database_url=database_url, flask_env="development")  # type: ignore[call-arg]
    return settings.sqlalchemy_url


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return str(versions[-1] / name) if versions else name


# ---- the service ---------------------------------------------------------------------


class Service:
    """`email-service serve` (and optionally a Celery worker) with an environment."""

    def __init__(self, root: Path, database_url: str, **env: str) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.encryption_key = env.pop("ENCRYPTION_KEY", generate_key())
        self.env = base_env(
            root,
            DATABASE_URL=database_url,
            JWT_SECRET=JWT_SECRET,
            JWT_AUDIENCE=JWT_AUDIENCE,
            JWT_ISSUER=JWT_ISSUER,
            ENCRYPTION_KEY=self.encryption_key,
            ALLOWED_MAIL_HOSTS="127.0.0.1/8,localhost",
            RATE_LIMIT_ENABLED="false",
            BLOB_FSYNC="false",
            FLASK_PORT=str(self.port),
            GUNICORN_WORKERS="2",
            GUNICORN_THREADS="4",
            METRICS_DIR=str(root / "metrics"),
        )
        self.env.update(env)
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()

    @property
    def log_dir(self) -> Path:
        return Path(self.env["LOG_DIR"])

    def migrate(self) -> None:
        """`email-service migrate`, done in this process (the command costs seconds to start)."""
        database = Database(sqlalchemy_url(self.env["DATABASE_URL"]))
        try:
            migrate.upgrade(database.engine)
        finally:
            database.dispose()

    def start(self, worker: bool = False, concurrency: int = 2) -> Service:
        """Migrate, start the API (and a worker) side by side, wait until both are up."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.migrate()
        self.api = self._spawn("api", "serve")
        if worker:
            self.worker = self._spawn("worker", "worker", "--concurrency", str(concurrency))
            self.wait_worker(concurrency)
        wait_until(self._ready_or_dead, "the API to be ready")
        return self

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        out = (self.root / f"{name}.out").open("ab")
        return guard_popen(
            [str(BIN / "email-service"), *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def start_worker(self, concurrency: int = 2) -> None:
        """Start a Celery worker; return once its pool processes exist."""
        self.worker = self._spawn("worker", "worker", "--concurrency", str(concurrency))
        self.wait_worker(concurrency)

    def wait_worker(self, concurrency: int) -> None:
        worker = self.worker
        assert worker is not None

        def pool_up() -> bool:
            if worker.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.output('worker')}")
            return len(group_pids(worker.pid)) > concurrency

        wait_until(pool_up, "the worker's pool")

    def _ready_or_dead(self) -> bool:
        assert self.api is not None
        if self.api.poll() is not None:
            raise AssertionError(f"serve exited with {self.api.returncode}:\n{self.output('api')}")
        return self.ready()

    def ready(self) -> bool:
        """True if /health/ready answers 200."""
        try:
            return self.http.get(self.base + "/health/ready", timeout=POLL_TIMEOUT_S).ok
        except requests.RequestException:
            return False

    def output(self, name: str) -> str:
        path = self.root / f"{name}.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in (self.worker, self.api):
            if proc is not None:
                kill_tree(proc)
        self.http.close()

    # ---- HTTP ----
    def call(self, method: str, path: str, tenant: str | None = None, **kwargs: Any) -> Any:
        """One request as ``tenant`` (valid token + header); returns the response."""
        sent = dict(kwargs.pop("headers", {}))
        if tenant is not None:
            sent = {**headers(tenant), **sent}
        kwargs.setdefault("timeout", 60)
        return self.http.request(method, self.base + path, headers=sent, **kwargs)

    def create_account(self, tenant: str, user: Any, imap_port: int, **extra: Any) -> Any:
        """Register a Dovecot user's mailbox over the API (plain IMAP on loopback)."""
        body = {
            "email": user.email,
            "username": user.email,
            "password": user.password,
            "imap_host": "127.0.0.1",
            "imap_port": imap_port,
            "imap_security": "none",
            **extra,
        }
        response = self.call("POST", "/api/accounts", tenant, json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def sync(self, tenant: str, account_id: str, timeout: float = 180) -> dict[str, Any]:
        """Trigger a sync over the API and wait for it to end; returns the final status."""
        response = self.call("POST", f"/api/sync/imap/{account_id}", tenant)
        assert response.status_code == 202, response.text
        job = response.json()["job_id"]

        def finished() -> dict[str, Any] | None:
            status = self.call("GET", f"/api/sync/status/{account_id}", tenant).json()
            done = status["job_id"] == job and status["state"] in ("ok", "error", "auth_failed")
            return status if done else None

        result: dict[str, Any] = wait_until(finished, "the sync to finish", timeout)
        return result

    def messages(self, tenant: str, **query: Any) -> list[dict[str, Any]]:
        """Every message of the tenant (following cursors)."""
        found: list[dict[str, Any]] = []
        params = {"limit": 500, **query}
        while True:
            page = self.call("GET", "/api/messages", tenant, params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            found += body["items"]
            if not body["next_cursor"]:
                return found
            params["cursor"] = body["next_cursor"]
