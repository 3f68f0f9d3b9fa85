"""wrk and Gunicorn for load runs: the load test (``test_load.py``) and the API benchmark
(``bench/api/bench_api.py``) measure with the same tool, settings and parsing.

:func:`gunicorn_app` serves a small WSGI app (the hello-world ceiling, the floor app)
under the service's own Gunicorn settings (``deploy/gunicorn.conf.py``: gthread, 4
workers x 2 threads), so the only difference from ``email-service serve`` is the app.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.ports import free_port
from tests.servers.process import guard_popen, kill_tree
from tests.servers.service import BIN
from tests.servers.wait import wait_for

# wrk: one thread per core, enough connections to keep all 8 handler threads busy.
WRK = ["-t2", "-c16", "--latency"]
REPO = Path(__file__).resolve().parents[2]
# The service's Gunicorn settings (deploy/gunicorn.conf.py), for the hello-world and floor.
GUNICORN_CONFIG = """
bind = "127.0.0.1:{port}"
worker_class = "gthread"
workers = 4
threads = 2
timeout = 120
graceful_timeout = 30
keepalive = 5
max_requests = 10000
max_requests_jitter = 1000
worker_tmp_dir = "/dev/shm"
control_socket_disable = True
loglevel = "warning"
"""
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Run:
    """One wrk run."""

    rps: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def parse(output: str) -> Run:
    """Requests/s, p99, totals and errors from wrk's --latency output."""
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    total = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert p99 and total and rps, output
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
        output,
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Run(
        rps=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * UNITS[p99.group(2)],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def wrk(url: str, seconds: int, headers: dict[str, str], options: list[str] = WRK) -> Run:
    """Run wrk against ``url`` for ``seconds`` with ``headers``; its figures."""
    args = ["wrk", *options, f"-d{seconds}s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    result = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    return parse(result.stdout)


@contextlib.contextmanager
def gunicorn_app(
    workdir: Path,
    app: str,
    path: str,
    headers: dict[str, str],
    pids: list[int] | None = None,
    **env: str,
) -> Iterator[str]:
    """``app`` under Gunicorn with the service's settings; the URL of ``path``. Its
    process (the leader of its process group) is appended to ``pids`` when given."""
    name = app.rsplit(".", 1)[-1].split(":", maxsplit=1)[0]
    port = free_port()
    config = workdir / f"{name}.conf.py"
    config.write_text(GUNICORN_CONFIG.format(port=port))
    out = workdir / f"{name}.out"
    proc = guard_popen(
        [str(BIN / "gunicorn"), "--config", str(config), app],
        cwd=REPO,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )
    url = f"http://127.0.0.1:{port}{path}"
    if pids is not None:
        pids.append(proc.pid)
    try:
        import requests

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(out.read_text())
            try:
                return requests.get(url, headers=headers, timeout=2).ok
            except requests.RequestException:
                return False

        wait_for(up, name)
        yield url
    finally:
        kill_tree(proc)
