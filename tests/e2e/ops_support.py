"""Helpers of the operations e2e tests: servers whose output goes to a file (a pipe nobody
reads would fill and stall a busy server), HTTP from a chosen loopback source address."""

from __future__ import annotations

import http.client
import json
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.conftest import BIN, free_port, stop, wait_http


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
    """Run ``email-service ARGS`` (``serve`` by default) until the block ends."""
    port = port or free_port()
    handle = output.open("ab")
    proc = subprocess.Popen(
        [str(BIN / "email-service"), *(args or ("serve",))],
        env={**env, "FLASK_PORT": str(port)},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", port, proc, output)
    try:
        if not args:
            wait_http(server.base + "/health", proc)
        yield server
    finally:
        stop(proc)
        handle.close()


def loopback_source() -> str:
    """A random 127/8 address: this test's own client IP (rate-limit keys live in Redis)."""
    return f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


# A socket bound, not a speed check: a request may wait for a recycled Gunicorn worker to
# boot, which takes long on a 2-core machine that other suites share.
CALL_TIMEOUT_S = 120


def call(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; returns status, headers, body."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=CALL_TIMEOUT_S, source_address=(source, 0) if source else None
    )
    try:
        data = json.dumps(body).encode() if body is not None else None
        sent = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()
