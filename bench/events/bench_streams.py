#!/usr/bin/env python3
"""Do open event streams slow the API? ``GET /api/accounts`` latency with 0 and N open
``GET /api/events`` streams.

    .venv/bin/python bench/events/bench_streams.py --streams 500 --requests 2000

Starts, in a temporary directory, ``email-service serve`` (Gunicorn gthread, the
environment's worker/thread counts) and the events server, on the embedded default
(SQLite). Two layouts:

- ``separate`` (compose): the events server is its own process, ``email-service events``;
- ``embedded`` (``make run``): ``serve`` runs it in a thread of its worker (EVENTS_EMBEDDED).

For each: R sequential requests to ``GET /api/accounts`` (10 accounts) with no stream
open; then N streams opened (each answered 200 and kept reading, in a separate client
process) and R requests again while they are quiet (heartbeats only); then R requests
while a writer commits one change per second, so every stream carries an event a second.
Prints the p99 of each run and its ratio to the first (target: at most 1.5 with N open).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


@contextmanager
def stack(layout: str, tmp: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    api_port, events_port = _port(), _port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "EVENTS_"))},
        "FLASK_ENV": "development",
        "FLASK_HOST": "127.0.0.1",
        "FLASK_PORT": str(api_port),
        "EVENTS_PORT": str(events_port),
        "EVENTS_EMBEDDED": "true" if layout == "embedded" else "false",
        "DATA_DIR": str(tmp / "data"),
        "LOG_DIR": str(tmp / "logs"),
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_ENABLED": "false",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    subprocess.run(
        [str(BIN / "email-service"), "migrate"], env=env, check=True, capture_output=True
    )
    procs = [
        subprocess.Popen(
            [str(BIN / "email-service"), "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    if layout == "separate":
        procs.append(
            subprocess.Popen(
                [str(BIN / "email-service"), "events"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    api, events = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{events_port}"
    try:
        _wait(api + "/health")
        _wait(events + "/health")
        token = subprocess.run(
            [str(BIN / "email-service"), "token", "--tenant", "default"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        yield api, events, {"Authorization": f"Bearer {token}"}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def timings(api: str, headers: dict[str, str], count: int) -> list[float]:
    found = []
    with httpx.Client(headers=headers, timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(api + "/api/accounts")
            found.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return found


class Streams:
    """N open streams on an event loop in a child process (the timing client keeps its own
    interpreter); counts the streams open and the events they received."""

    def __init__(self, url: str, headers: dict[str, str], count: int) -> None:
        self.url, self.headers, self.count = url, headers, count
        self.opened = multiprocessing.Value("i", 0)
        self.received = multiprocessing.Value("i", 0)
        self.stop = multiprocessing.Event()
        self.process = multiprocessing.Process(target=self._run, daemon=True)

    @property
    def open(self) -> int:
        return int(self.opened.value)

    @property
    def events(self) -> int:
        return int(self.received.value)

    def start(self) -> None:
        self.process.start()

    def wait_ready(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.open < self.count and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.open >= self.count

    def close(self) -> None:
        self.stop.set()
        self.process.join(timeout=30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _one(self, client: httpx.AsyncClient) -> None:
        async with client.stream("GET", self.url + "/api/events") as response:
            assert response.status_code == 200
            with self.opened.get_lock():
                self.opened.value += 1
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    with self.received.get_lock():
                        self.received.value += 1

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.count + 10)
        timeout = httpx.Timeout(None, connect=30)
        async with httpx.AsyncClient(headers=self.headers, limits=limits, timeout=timeout) as c:
            tasks = [asyncio.create_task(self._one(c)) for _ in range(self.count)]
            while not self.stop.is_set():
                await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {
        "p50": pick(0.5),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "mean": statistics.mean(ordered) * 1000,
    }


def run(layout: str, streams: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, stack(layout, Path(tmp)) as (api, events, headers):
        with httpx.Client(headers=headers) as client:
            for n in range(10):
                client.post(
                    api + "/api/accounts",
                    json={"email": f"b{n}@example.com", "password": "pw-123456"},
                )
        timings(api, headers, 100)  # warm up
        idle = timings(api, headers, requests)
        opened = Streams(events, headers, streams)
        opened.start()
        if not opened.wait_ready(120):
            raise SystemExit(f"only {opened.open} of {streams} streams opened")
        quiet = timings(api, headers, requests)  # streams open, nothing to send
        stop_writer = threading.Event()

        def writer() -> None:  # one committed change per second: the streams carry events
            n = 0
            with httpx.Client(headers=headers) as client:
                while not stop_writer.wait(1.0):
                    client.put(
                        api
                        + "/api/accounts/"
                        + client.get(api + "/api/accounts").json()["items"][0]["id"],
                        json={"display_name": f"n{n}"},
                    )
                    n += 1

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        busy = timings(api, headers, requests)
        stop_writer.set()
        thread.join()
        received = opened.events
        opened.close()
        return {
            "layout": layout,
            "streams": opened.open,
            "events_received": received,
            "idle_ms": summary(idle),
            "quiet_ms": summary(quiet),
            "streams_ms": summary(busy),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--layout", choices=["separate", "embedded", "both"], default="both")
    args = parser.parse_args()
    layouts = ["separate", "embedded"] if args.layout == "both" else [args.layout]
    print(f"GET /api/accounts, {args.requests} sequential requests; {args.streams} open streams")
    print(
        f"{'layout':<10} {'streams':>7} {'events':>7} {'p99 0':>9} {'p99 N quiet':>12} "
        f"{'ratio':>6} {'p99 N 1/s':>10} {'ratio':>6}"
    )
    for layout in layouts:
        r = run(layout, args.streams, args.requests)
        i, q, b = r["idle_ms"]["p99"], r["quiet_ms"]["p99"], r["streams_ms"]["p99"]
        print(
            f"{layout:<10} {r['streams']:>7} {r['events_received']:>7} {i:>7.2f}ms "
            f"{q:>10.2f}ms {q / i:>6.2f} {b:>8.2f}ms {b / i:>6.2f}"
        )
        print(json.dumps(r))


if __name__ == "__main__":
    main()
