"""A real HTTP webhook receiver on loopback, verifying signatures as a receiver would.

Paths choose behaviour: ``/ok`` answers 204; ``/flaky`` answers 500 to the first attempt
of every ``webhook-id`` and 200 afterwards; ``/hang`` holds the request until the
receiver stops. Every request is kept (headers and raw body) for the test to check.
With ``tls`` it serves HTTPS (one-click unsubscribe endpoints must be https, RFC 8058 §3.1).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers.ports import LOOPBACK
from tests.servers.tls import TLSFiles


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """The receiver's state, shared with its handler threads."""

    url: str
    requests: list[Received] = field(default_factory=list)
    seen_ids: set[tuple[str, str]] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def on(self, path: str) -> list[Received]:
        """Requests that came to ``path``."""
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Wait until ``predicate()`` holds (True) or ``timeout`` passes (False)."""
        with self.arrived:
            return self.arrived.wait_for(predicate, timeout)


def _handler(state: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            webhook_id = headers.get("webhook-id", "")
            if self.path == "/hang":
                state.release.wait()
                status = 200
            elif self.path == "/flaky":
                with state.lock:
                    first = (self.path, webhook_id) not in state.seen_ids
                    state.seen_ids.add((self.path, webhook_id))
                status = 500 if first else 200
            else:
                status = 204
            with state.lock:
                state.requests.append(Received(self.path, headers, body, status))
            try:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up (timeout)
            with state.arrived:
                state.arrived.notify_all()

    return Handler


@contextmanager
def webhook_receiver(tls: TLSFiles | None = None) -> Iterator[Receiver]:
    """A running receiver; its base URL is ``receiver.url`` (https with ``tls``)."""
    server = ThreadingHTTPServer((LOOPBACK, 0), BaseHTTPRequestHandler)
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls else "http"
    state = Receiver(url=f"{scheme}://{LOOPBACK}:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(state)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
