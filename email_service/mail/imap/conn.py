"""One IMAP connection: socket and TLS set-up, tagged commands with literals, error mapping.

Socket and TLS failures become :class:`RemoteTemporaryError` (timeouts, resets, refused
connections) or :class:`RemotePermanentError` (certificate verification, TLS protocol
mismatch); after either the connection is marked broken and refuses further commands.
Tagged ``NO``/``BAD`` answers are mapped by :func:`raise_for_status`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from email_service.errors import RemoteError, RemotePermanentError, RemoteTemporaryError
from email_service.mail.imap.codec import Arg, Literal, count_uid_set
from email_service.mail.imap.parse import MAX_LITERAL, ImapProtocolError, Response, ResponseReader

log = logging.getLogger(__name__)

SECURITY_MODES = ("ssl", "starttls", "none")
# Non-synchronizing literals of LITERAL- are limited to 4096 octets (RFC 7888 §4).
LITERAL_MINUS_MAX = 4096
# NO codes that mean "try again later" (RFC 5530 §3): unavailable back end, mailbox in use,
# a resource limit, or a server-side failure that a retry may not meet again.
TEMPORARY_CODES = frozenset({"UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG"})

UntaggedHandler = Callable[[Response], None]


def _ignore(_response: Response) -> None:
    return None


def mapped_error(exc: OSError, what: str) -> RemoteError:
    """The service's error for a socket or TLS exception."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RemotePermanentError(f"{what}: TLS certificate rejected: {exc.verify_message}")
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return RemoteTemporaryError(f"{what}: TLS connection closed: {exc}")
    if isinstance(exc, ssl.SSLError):
        return RemotePermanentError(f"{what}: TLS failed: {exc}")
    if isinstance(exc, TimeoutError):
        return RemoteTemporaryError(f"{what}: timed out")
    return RemoteTemporaryError(f"{what}: {exc.strerror or exc}")


@contextlib.contextmanager
def remote_errors(what: str) -> Iterator[None]:
    """Map socket and TLS exceptions raised inside the block to the service's errors."""
    try:
        yield
    except OSError as exc:
        raise mapped_error(exc, what) from exc


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: system trust store, or only ``ca_file`` if given."""
    return ssl.create_default_context(cafile=ca_file)


def open_socket(
    host: str,
    port: int,
    *,
    implicit_tls: bool,
    timeout: float,
    connect_address: str | None,
    ca_file: str | None,
) -> socket.socket:
    """Dial ``connect_address`` (or ``host``); with ``implicit_tls`` verify TLS for ``host``."""
    with remote_errors(f"connecting to {host}:{port}"):
        sock = socket.create_connection((connect_address or host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if implicit_tls:
                return tls_context(ca_file).wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return sock


def _words(tokens: Sequence[object]) -> frozenset[str]:
    return frozenset(str(word).upper() for word in tokens)


def raise_for_status(response: Response, what: str) -> Response:
    """Return an OK response; raise the mapped error for NO and BAD (RFC 9051 §7.1)."""
    if response.kind == "OK":
        return response
    message = f"{what} failed: {response.kind} {response.text}".strip()
    details = {"response_code": response.code}
    if response.kind == "NO" and response.code in TEMPORARY_CODES:
        raise RemoteTemporaryError(message, **details)
    raise RemotePermanentError(message, **details)


class ImapConnection:
    """Tags, sends and reads; keeps what the server announces, whenever it does.

    Untagged responses may come with any command (RFC 9051 §7): CAPABILITY, EXISTS,
    EXPUNGE/VANISHED, ENABLED, [ALERT] and BYE update the attributes below in ``read``.
    """

    def __init__(
        self, sock: socket.socket, *, host: str = "", max_literal: int = MAX_LITERAL
    ) -> None:
        self.sock = sock
        self.host = host
        self.reader = ResponseReader(sock, max_literal=max_literal)
        self.capabilities: frozenset[str] = frozenset()
        self.enabled: frozenset[str] = frozenset()  # extensions ENABLEd (RFC 5161)
        self.exists = 0  # message count of the selected mailbox
        self.alerts: list[str] = []  # [ALERT] texts, to be shown to a person (RFC 9051 §7.1)
        self.broken = False
        self.bye: str | None = None
        self._counter = 0

    def _on_untagged(self, response: Response) -> None:
        kind, code = response.kind, response.code
        if code == "CAPABILITY":
            self.capabilities = _words(response.code_args)
        elif kind == "CAPABILITY":
            self.capabilities = _words(response.data)
        elif kind == "EXISTS" and response.number is not None:
            self.exists = response.number
        elif kind == "EXPUNGE":
            self.exists = max(0, self.exists - 1)
        elif kind == "VANISHED" and response.data and isinstance(response.data[-1], str):
            if not isinstance(response.data[0], list):  # not (EARLIER): gone just now
                self.exists = max(0, self.exists - count_uid_set(response.data[-1]))
        elif kind == "ENABLED":
            self.enabled |= _words(response.data)
        elif kind == "BYE":
            self.bye = response.text
        if code == "ALERT":
            log.warning("IMAP server alert from %s: %s", self.host, response.text)
            self.alerts.append(response.text)

    def run(
        self, command: Sequence[Arg], what: str, handler: UntaggedHandler = _ignore
    ) -> Response:
        """Execute a command and return its OK, or raise the mapped error."""
        return raise_for_status(self.execute(command, handler), what)

    # ---- sending -------------------------------------------------------------------

    def next_tag(self) -> bytes:
        """A fresh command tag."""
        self._counter += 1
        return b"E%d" % self._counter

    def send(self, parts: Sequence[Arg]) -> bytes:
        """Send a command that needs no continuation (pipelining); return its tag."""
        tag = self.next_tag()
        line = bytearray(tag)
        for part in parts:
            line += b" "
            if isinstance(part, Literal):
                if not self._non_synchronizing(part):
                    raise RemotePermanentError("a synchronizing literal cannot be pipelined")
                line += self._literal_head(part) + part.data
            else:
                line += part
        self._sendall(bytes(line) + b"\r\n")
        return tag

    def execute(self, parts: Sequence[Arg], handler: UntaggedHandler = _ignore) -> Response:
        """Run one command to completion; untagged responses go to ``handler``."""
        tag = self.next_tag()
        line = bytearray(tag)
        for part in parts:
            line += b" "
            if not isinstance(part, Literal):
                line += part
                continue
            line += self._literal_head(part)
            if not self._non_synchronizing(part):
                self._sendall(bytes(line))
                line = bytearray()
                refused = self.wait_continuation(tag, handler)
                if refused is not None:
                    return refused
            line += part.data
        self._sendall(bytes(line) + b"\r\n")
        return self.wait(tag, handler)

    def send_line(self, data: bytes) -> None:
        """Send a bare line, e.g. a SASL response after a continuation."""
        self._sendall(data + b"\r\n")

    def _non_synchronizing(self, literal: Literal) -> bool:
        # LITERAL+ (RFC 7888 §3): any literal may skip the "+"; LITERAL- (§4): small ones.
        if "LITERAL+" in self.capabilities:
            return True
        return "LITERAL-" in self.capabilities and len(literal.data) <= LITERAL_MINUS_MAX

    def _literal_head(self, literal: Literal) -> bytes:
        plus = b"+" if self._non_synchronizing(literal) else b""
        return b"%s{%d%s}\r\n" % (b"~" if literal.binary else b"", len(literal.data), plus)

    def _sendall(self, data: bytes) -> None:
        self._check_usable()
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self._fail(exc, "sending")

    # ---- reading -------------------------------------------------------------------

    def read(self) -> Response:
        """The next response; untagged ones update the connection's state first."""
        self._check_usable()
        try:
            response = self.reader.read()
        except (OSError, RemoteError) as exc:
            self._fail(exc, "reading")
        if response.untagged:
            self._on_untagged(response)
        elif response.code == "CAPABILITY":  # e.g. in the OK of a login (RFC 9051 §7.1)
            self.capabilities = _words(response.code_args)
        return response

    def wait(self, tag: bytes, handler: UntaggedHandler = _ignore) -> Response:
        """Read until the tagged response of ``tag``; untagged ones go to ``handler``."""
        expected = tag.decode("ascii")
        while True:
            response = self.read()
            if response.untagged:
                handler(response)
            elif response.tag == expected:
                return response
            else:
                self._protocol_error(f"unexpected response {response.kind} {response.tag!r}")

    def wait_continuation(self, tag: bytes, handler: UntaggedHandler) -> Response | None:
        """Read until a ``+`` (None) or the command's tagged answer (returned)."""
        expected = tag.decode("ascii")
        while True:
            response = self.read()
            if response.kind == "+":
                return None
            if response.untagged:
                handler(response)
            elif response.tag == expected:
                return response
            else:
                self._protocol_error(f"response for unknown tag {response.tag!r}")

    # ---- lifecycle -----------------------------------------------------------------

    def starttls(self, context: ssl.SSLContext, host: str) -> None:
        """Switch the socket to TLS after a successful STARTTLS (RFC 9051 §6.2.1)."""
        if self.reader.buffered():
            # Bytes sent before the handshake would be taken as protected: a plaintext
            # injection (the STARTTLS flaw of CVE-2011-0411). Refuse the connection.
            self._protocol_error("data after STARTTLS before the TLS handshake")
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        except OSError as exc:
            self._fail(exc, "TLS handshake")
        self.reader.sock = self.sock

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.broken = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def _check_usable(self) -> None:
        if self.broken:
            raise RemoteTemporaryError("the IMAP connection is closed")

    def _protocol_error(self, message: str) -> None:
        self.close()
        raise ImapProtocolError(message)

    def _fail(self, exc: OSError | RemoteError, what: str) -> NoReturn:
        """Close, then raise the service's error for ``exc`` (the BYE text if one came)."""
        self.close()
        error = exc if isinstance(exc, RemoteError) else mapped_error(exc, f"IMAP {what}")
        if self.bye and isinstance(error, RemoteTemporaryError):
            error = RemoteTemporaryError(f"IMAP server said goodbye: {self.bye}")
        if error is exc:
            raise error
        raise error from exc
