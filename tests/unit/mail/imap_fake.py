"""A scripted IMAP peer on a loopback socket, for what a real Dovecot will not do.

Each test gives a script (a function of :class:`Peer`) that plays the server side of one
connection: a tarpit, a cut in the middle of a literal, injected bytes after STARTTLS,
unsolicited responses between FETCH answers.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

# Bounds a broken test instead of hanging it; never reached when the client is right.
PEER_TIMEOUT = 10.0
USER, PASSWORD = "user@example.test", "secret"
GREETING_CAPS = "IMAP4rev1 AUTH=PLAIN SASL-IR"
LOGGED_IN_CAPS = "IMAP4rev1 UIDPLUS"


class Peer:
    """The server end of one connection, with a record of every line received."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.conn.settimeout(PEER_TIMEOUT)
        self.buffer = b""
        self.lines: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise EOFError("client closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        self.lines.append(line)
        return line

    def raw(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += self.conn.recv(65536)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def command(self) -> tuple[bytes, bytes]:
        """(tag, rest) of the next command line."""
        tag, _, rest = self.line().partition(b" ")
        return tag, rest

    def login(self, greeting_caps: str = GREETING_CAPS, caps: str = LOGGED_IN_CAPS) -> None:
        """Greet and accept AUTHENTICATE PLAIN with SASL-IR."""
        self.send(f"* OK [CAPABILITY {greeting_caps}] fake ready\r\n".encode())
        tag, rest = self.command()
        assert rest.startswith(b"AUTHENTICATE PLAIN "), rest
        self.send(tag + f" OK [CAPABILITY {caps}] Logged in\r\n".encode())

    def until_closed(self) -> None:
        """Answer LOGOUT (if it comes) and wait for the client to go."""
        try:
            while True:
                tag, rest = self.command()
                if rest.upper() == b"LOGOUT":
                    self.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
        except (EOFError, OSError):
            return


Script = Callable[[Peer], None]


class FakeServer:
    """Listens on loopback and runs ``script`` for the first connection in a thread."""

    def __init__(self, script: Script | None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.peer: Peer | None = None
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        if script is not None:  # None: a tarpit that never accepts
            self.thread.start()

    def _serve(self, script: Script) -> None:
        self.listener.settimeout(PEER_TIMEOUT)
        try:
            conn, _ = self.listener.accept()
            with conn:
                self.peer = Peer(conn)
                script(self.peer)
        except BaseException as exc:  # noqa: BLE001 -- re-raised by the fixture
            self.errors.append(exc)

    def close(self) -> None:
        self.listener.close()
        if self.thread.is_alive() or self.thread.ident:
            self.thread.join(PEER_TIMEOUT)


@pytest.fixture
def fake_server() -> Iterator[Callable[[Script | None], FakeServer]]:
    """Start fake servers; their script errors fail the test at teardown."""
    servers: list[FakeServer] = []

    def start(script: Script | None) -> FakeServer:
        server = FakeServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    errors = [e for s in servers for e in s.errors]
    if errors:
        raise errors[0]
