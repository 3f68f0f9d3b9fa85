"""A private redis-server for tests: a free loopback port, no persistence, own directory.

Tests that need their own keyspace (leases, marks, a broker that a test may flush) use
this rather than the shared 127.0.0.1:6379, whose databases other suites own.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.servers.ports import LOOPBACK, free_ports
from tests.servers.process import (
    INSTALL_HINT,
    START_TIMEOUT,
    Reaper,
    ServerStartError,
    find_binary,
    kill_group,
    log_tail,
    register,
    unregister,
)


def missing_reason() -> str | None:
    """Why redis-server cannot run here, or None."""
    if find_binary("redis-server") is None:
        return f"redis-server is not installed; {INSTALL_HINT}"
    return None


class RedisServer:
    """One redis-server under ``root``; ``start()``, use ``url``, ``stop()``."""

    host = LOOPBACK

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_ports(1)[0]
        self.log_file = root / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: Reaper | None = None

    @property
    def url(self) -> str:
        """redis://host:port/0"""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start and wait until it answers PING."""
        binary = find_binary("redis-server")
        if binary is None:
            raise ServerStartError(f"redis-server is not installed; {INSTALL_HINT}")
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", self.host, "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.root), "--logfile", str(self.log_file)]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        register(self)
        self._reaper = Reaper(self._proc.pid)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                raise ServerStartError(f"redis-server exited\n{log_tail(self.log_file)}")
            try:
                redis.Redis(host=self.host, port=self.port, socket_timeout=1).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise ServerStartError(f"redis-server did not answer PING\n{log_tail(self.log_file)}")

    def stop(self) -> None:
        """Stop it (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            kill_group(proc.pid)
            proc.wait()
        if self._reaper is not None:
            self._reaper.release()
            self._reaper = None
        unregister(self)
