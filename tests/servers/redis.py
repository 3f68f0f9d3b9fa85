"""A redis-server of our own for tests that flush, fill or restart it (never the shared one)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import redis

from tests.servers.ports import free_port
from tests.servers.process import guard_popen, kill_tree
from tests.servers.wait import wait_for

# A cold start takes milliseconds; a loaded CI machine gets generous slack.
START_TIMEOUT_S = 20


class RedisServer:
    """A redis-server on a free loopback port (restartable on the same port)."""

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
        wait_for(self.ping, f"redis on {self.port}", START_TIMEOUT_S)

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            kill_tree(self.proc, sig, timeout=10)
            self.proc = None
