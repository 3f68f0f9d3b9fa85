"""Run the real ``email-service`` command and Gunicorn as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL

BIN = Path(sys.executable).parent
# Gunicorn imports the app in each worker; allow for a slow, loaded CI machine.
START_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the service: no inherited service variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "GUNICORN_"))}
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "JWT_SECRET",
        "ENCRYPTION_KEY",
        "DATA_DIR",
        "LOG_DIR",
        "ALLOWED_MAIL_HOSTS",
    ):
        env.pop(name, None)
    env.update(
        {
            "FLASK_ENV": "development",
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_DIR": str(tmp_path / "logs"),
            "FLASK_HOST": "127.0.0.1",
        }
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``email-service ARGS``."""
    return subprocess.run(
        [str(BIN / "email-service"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def wait_http(url: str, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll ``url`` until it answers 200, or fail with the process output."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"server exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {START_TIMEOUT_S}s")


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group (graceful), then SIGKILL if needed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start ``email-service serve`` with an env; returns (base_url, process)."""
    started: list[subprocess.Popen[Any]] = []

    def start(env: dict[str, str]) -> tuple[str, subprocess.Popen[Any]]:
        port = free_port()
        env = {**env, "FLASK_PORT": str(port)}
        proc = subprocess.Popen(
            [str(BIN / "email-service"), "serve"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health", proc)
        return base, proc

    yield start
    for proc in started:
        stop(proc)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for one test (skips when PostgreSQL is unreachable)."""
    name = f"es_e2e_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
