"""The service under test as the world runs it: the ``email-service`` command (``serve``
under Gunicorn, ``worker``, one-shot commands) as subprocesses of this test process.

Output goes to a file (a pipe nobody reads would fill and stall a busy server); each
long-running process leads its own process group, guarded by a reaper so that nothing
outlives an interrupted run (tests/servers/process.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers.ports import free_port
from tests.servers.process import guard_popen, kill_tree
from tests.servers.wait import wait_for

BIN = Path(sys.executable).parent
# Gunicorn imports the app in each worker; allow for a slow, loaded CI machine.
START_TIMEOUT_S = 60
# Service variables never inherited from the calling environment (besides FLASK_*, GUNICORN_*).
CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "JWT_SECRET",
    "ENCRYPTION_KEY",
    "DATA_DIR",
    "LOG_DIR",
    "ALLOWED_MAIL_HOSTS",
)


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the service: no inherited service variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLASK_", "GUNICORN_")) and k not in CLEARED
    }
    env.update(
        {
            "FLASK_ENV": "development",
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_DIR": str(tmp_path / "logs"),
            "FLASK_HOST": "127.0.0.1",
            # The machines' Python may predate the CVE-2024-4032/6923 fixes; production
            # refuses it unless told (tests/review checks the refusal itself).
            "ALLOW_UNPATCHED_PYTHON": "true",
            # Tests start syncs themselves, once the mailbox holds what they check.
            "SYNC_ON_CREATE": "false",
        }
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``email-service ARGS`` to its end."""
    return subprocess.run(
        [str(BIN / "email-service"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def spawn(env: dict[str, str], output: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``email-service ARGS`` in a guarded process group, its output appended to a file."""
    with output.open("ab") as handle:
        return guard_popen(
            [str(BIN / "email-service"), *args], env=env, stdout=handle, stderr=subprocess.STDOUT
        )


def wait_http(
    url: str, proc: subprocess.Popen[Any] | None = None, output: Path | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail with the output if ``proc`` exits first."""

    def answered() -> bool:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            if output is not None and output.exists():
                out = output.read_text(errors="replace")
            raise AssertionError(f"server exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    wait_for(answered, f"{url} to answer", START_TIMEOUT_S, interval=0.2)


@dataclass
class Server:
    """A running ``email-service`` command and where its output goes."""

    base: str
    port: int
    proc: subprocess.Popen[Any]
    output: Path

    def lines(self) -> list[str]:
        """Everything the process printed so far."""
        return self.output.read_text(errors="replace").splitlines()


@contextmanager
def running(
    env: dict[str, str], output: Path, *args: str, port: int | None = None
) -> Iterator[Server]:
    """Run ``email-service ARGS`` (``serve`` by default, waited for) until the block ends."""
    port = port or free_port()
    proc = spawn({**env, "FLASK_PORT": str(port)}, output, *(args or ("serve",)))
    server = Server(f"http://127.0.0.1:{port}", port, proc, output)
    try:
        if not args:
            wait_http(server.base + "/health", proc, output)
        yield server
    finally:
        kill_tree(proc)
