"""The running service as the world sees it: `email-service serve` (Gunicorn) and a Celery
worker as subprocesses, over a real PostgreSQL database and a Redis server of our own
(both from tests/servers/, as are the servers a fault test restarts under load).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from email_service.config import Settings
from email_service.security import tokens
from email_service.security.crypto import generate_key
from email_service.store import migrate
from email_service.store.db import Database
from tests.conftest import JWT_SECRET
from tests.servers.ports import free_port
from tests.servers.process import group_pids, kill_tree
from tests.servers.service import base_env, spawn
from tests.servers.wait import wait_for

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
# Once a trigger has answered, the status stays queued or running until its job has ended;
# a run that starts later (a push from the embedded watcher) may name itself in job_id.
SYNC_ENDED = ("ok", "error", "auth_failed")
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


def sqlalchemy_url(database_url: str) -> str:
    """DATABASE_URL as the service's engine spells it (psycopg 3 driver)."""
    settings = Settings(_env_file=None, database_url=database_url, flask_env="development")  # type: ignore[call-arg]
    return settings.sqlalchemy_url


# ---- the service ---------------------------------------------------------------------


class Service:
    """`email-service serve` (and optionally a Celery worker) with an environment."""

    def __init__(
        self, root: Path, database_url: str, owner_url: str | None = None, **env: str
    ) -> None:
        self.root = root
        self.owner_url = owner_url or database_url  # migrations run as the tables' owner
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
        database = Database(sqlalchemy_url(self.owner_url))
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
        wait_for(self._ready_or_dead, "the API to be ready")
        return self

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return spawn(self.env, self.root / f"{name}.out", *args)

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

        wait_for(pool_up, "the worker's pool")

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

        def finished() -> dict[str, Any] | None:
            status = self.call("GET", f"/api/sync/status/{account_id}", tenant).json()
            return status if status["state"] in SYNC_ENDED else None

        result: dict[str, Any] = wait_for(finished, "the sync to finish", timeout)
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
