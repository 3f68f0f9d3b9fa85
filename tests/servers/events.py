"""The events process's ASGI app served by uvicorn in a thread, on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from email_service.api.events import create_events_app
from tests.servers.ports import LOOPBACK, free_ports

# Seconds to wait for the server to accept connections before the test fails.
START_TIMEOUT_S = 20.0


@dataclass
class SseEvent:
    """One parsed server-sent event (comments collected separately)."""

    id: str | None
    event: str | None
    data: str


@contextmanager
def events_server(runtime: Any) -> Iterator[str]:
    """Serve ``runtime``'s events app; yields its base URL."""
    port = free_ports(1)[0]
    config = uvicorn.Config(
        create_events_app(runtime), host=LOOPBACK, port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("events server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def read_events(
    lines: Iterator[str], count: int, comments: list[str] | None = None
) -> list[SseEvent]:
    """Parse ``count`` events from an SSE line iterator (text/event-stream framing)."""
    found: list[SseEvent] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            if comments is not None:
                comments.append(line[1:].strip())
            continue
        if line == "":
            if "data" in fields:
                found.append(SseEvent(fields.get("id"), fields.get("event"), fields["data"]))
                if len(found) == count:
                    return found
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    raise AssertionError(f"stream ended after {len(found)} of {count} events")


def stream(url: str, headers: dict[str, str], **params: str) -> Any:
    """An open streaming GET (use as a context manager); reads fail after 20 s of silence."""
    return httpx.stream(
        "GET", f"{url}/api/events", headers=headers, params=params, timeout=httpx.Timeout(20.0)
    )
