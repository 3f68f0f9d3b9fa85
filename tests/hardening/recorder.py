"""A TCP proxy in front of the real Dovecot that keeps every byte the client sent, and a
parser that splits those bytes into IMAP commands the way a server does (RFC 9051 §2.2:
a command is a line; a literal ``{n}``, ``{n+}`` or ``~{n}`` at the end of a line carries
the next n octets, and the command goes on after them).

An injection shows up as a command the client never meant to send: a tag that is not the
client's own (``E1``, ``E2``, ...) or a verb outside what a sync uses.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}\Z")
COMMAND = re.compile(rb"([!#$&'*+,\-./0-9:;<=>?@A-Z\[^_`a-z|~]+) ([A-Za-z]+)")
OUR_TAG = re.compile(rb"E\d+\Z")
# What the sync engine and the Sent copy say to a server, and nothing else.
EXPECTED_VERBS = frozenset(
    b"CAPABILITY LOGIN AUTHENTICATE ENABLE ID NAMESPACE LIST STATUS SELECT EXAMINE UID "
    b"FETCH SEARCH NOOP LOGOUT STARTTLS COMPRESS IDLE APPEND CLOSE UNSELECT CHECK".split()
)


@dataclass(frozen=True)
class Command:
    """One command as the server would read it."""

    tag: bytes
    verb: bytes
    raw: bytes

    @property
    def expected(self) -> bool:
        return bool(OUR_TAG.match(self.tag)) and self.verb.upper() in EXPECTED_VERBS


def split_commands(stream: bytes) -> list[bytes]:
    """Cut a client's byte stream into commands, skipping literal data by its count."""
    commands = []
    pos = 0
    while pos < len(stream):
        start = pos
        while True:
            end = stream.find(b"\r\n", pos)
            if end < 0:
                pos = len(stream)
                break
            literal = LITERAL_AT_END.search(stream, pos, end)
            if literal is None:
                pos = end + 2
                break
            pos = end + 2 + int(literal.group(1))
        commands.append(stream[start:pos])
    return commands


def parse(stream: bytes) -> tuple[list[Command], list[bytes]]:
    """Commands, and the lines that are not commands (continuations are accounted for)."""
    commands: list[Command] = []
    stray: list[bytes] = []
    for raw in split_commands(stream):
        previous = commands[-1].verb.upper() if commands else b""
        if previous == b"AUTHENTICATE" and re.fullmatch(rb"[A-Za-z0-9+/=]*\r\n", raw):
            continue  # the SASL response after a continuation request
        if previous == b"IDLE" and raw == b"DONE\r\n":
            continue
        match = COMMAND.match(raw)
        if match is None:
            stray.append(raw)
        else:
            commands.append(Command(match.group(1), match.group(2), raw))
    return commands, stray


class RecordingProxy:
    """Forward 127.0.0.1:<port> to ``target``; record what each client sent.

    ``rename`` (server spelling -> what the client sees) rewrites whole lines both ways:
    the seam for mailbox names a real Dovecot never sends (invalid modified UTF-7).
    """

    def __init__(
        self,
        target: tuple[str, int],
        rename: dict[bytes, bytes] | None = None,
        rate: float | None = None,
    ) -> None:
        self.target = target
        self.rate = rate  # bytes per second from the server, None: as fast as it goes
        self.to_client = [_token(old, new) for old, new in (rename or {}).items()]
        self.to_server = [_token(new, old) for old, new in (rename or {}).items()]
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.streams: list[bytearray] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:  # the server is down: the client sees the connection close
                client.close()
                continue
            stream = bytearray()
            with self._lock:
                self.streams.append(stream)
                self._open += [client, server]
            up = (client, server, stream, self.to_server)
            threading.Thread(target=self._pipe, args=up, daemon=True).start()
            down = (server, client, None, self.to_client, self.rate)
            threading.Thread(target=self._pipe, args=down, daemon=True).start()

    @staticmethod
    def _pipe(
        src: socket.socket,
        dst: socket.socket,
        record: bytearray | None,
        rename: list[tuple[re.Pattern[bytes], bytes]],
        rate: float | None = None,
    ) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while data := src.recv(16384):
                if rate:
                    time.sleep(len(data) / rate)
                if record is not None:
                    record += data
                if not rename:
                    dst.sendall(data)
                    continue
                pending += data
                end = pending.rfind(b"\r\n")  # whole lines only: a name is never split
                cut = end + 2 if end >= 0 else 0
                lines, pending = pending[:cut], pending[cut:]
                for pattern, new in rename:
                    lines = pattern.sub(new.replace(b"\\", b"\\\\"), lines)
                dst.sendall(lines)
            dst.sendall(pending)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def reset(self) -> None:
        """Cut every open connection now: the server is gone, and the bytes it wrote before
        dying (still in socket buffers here) are lost with it."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def commands(self) -> tuple[list[Command], list[bytes]]:
        """Every command of every connection so far, and the stray lines."""
        commands: list[Command] = []
        stray: list[bytes] = []
        with self._lock:
            streams = [bytes(s) for s in self.streams]
        for stream in streams:
            found, other = parse(stream)
            commands += found
            stray += other
        return commands, stray

    def unexpected(self) -> list[bytes]:
        """Commands the client did not mean to send, and stray lines."""
        commands, stray = self.commands()
        return [c.raw for c in commands if not c.expected] + stray


def _token(old: bytes, new: bytes) -> tuple[re.Pattern[bytes], bytes]:
    """Match ``old`` as a whole atom or quoted string, never inside another name."""
    return re.compile(rb'(?<![^\s"(])' + re.escape(old) + rb'(?![^\s")])'), new


@contextlib.contextmanager
def recording_proxy(
    host: str, port: int, rename: dict[bytes, bytes] | None = None, rate: float | None = None
) -> Iterator[RecordingProxy]:
    """Run a RecordingProxy for the duration of the block."""
    with RecordingProxy((host, port), rename, rate) as proxy:
        yield proxy
