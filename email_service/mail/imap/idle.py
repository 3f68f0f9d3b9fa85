"""An asyncio IMAP client for push: log in, EXAMINE INBOX, NOTIFY, IDLE (RFC 2177, 5465).

One instance per watched account, thousands per event loop: a connection costs a
``StreamReader`` buffer (64 KiB cap) and a coroutine, not a thread or the sync engine's
1 MiB receive buffer. Responses go through the same parser as the sync engine
(``imap_parse.parse_segments``), so the grammar is checked in one place.

::

    connect -> greeting -> [STARTTLS] -> AUTHENTICATE PLAIN | LOGIN       (a password)
                                      | AUTHENTICATE OAUTHBEARER | XOAUTH2 (a token) -> CAPABILITY
            -> [ENABLE CONDSTORE] -> EXAMINE INBOX -> [NOTIFY SET ...]
            -> IDLE ──(renew_seconds, below the 29 min of RFC 2177 §3)──► DONE -> IDLE ...
                 └── EXISTS / EXPUNGE / VANISHED / FETCH / STATUS ──► on_change(folder)

With NOTIFY (RFC 5465 §5) the server also reports changes of every other personal mailbox
on this connection as ``* STATUS name (...)``; without it only INBOX is heard.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from email_service.errors import RemoteAuthError, RemoteTemporaryError
from email_service.mail import sasl
from email_service.mail.imap.codec import astring, check_text
from email_service.mail.imap.conn import TEMPORARY_CODES, raise_for_status, tls_context
from email_service.mail.imap.parse import (
    ImapProtocolError,
    Response,
    parse_segments,
    text_of,
)
from email_service.mail.sasl import BearerToken

# A connection's line buffer cap: IDLE traffic is short lines; a CAPABILITY or STATUS
# line is far below this. Anything longer ends the connection (the sync engine reads mail).
MAX_LINE = 64 * 1024
# Literals in push traffic are mailbox names in STATUS responses.
MAX_LITERAL = 64 * 1024
# RFC 2177 §3: servers may log out a client idle for 30 min; re-issue IDLE well before.
DEFAULT_RENEW_SECONDS = 25 * 60
# What a selected-mailbox or NOTIFY event means for us: the folder changed.
SELECTED_EVENTS = frozenset({"EXISTS", "EXPUNGE", "VANISHED", "FETCH"})
# NOTIFY events of every personal mailbox (RFC 5465 §5.2-5.4); MessageNew and
# MessageExpunge must be asked together, FlagChange needs both.
NOTIFY_EVENTS = b"(MessageNew MessageExpunge FlagChange)"
INBOX = "INBOX"
# TCP keepalive: first probe after 60 s of silence, then every 20 s, 3 unanswered probes
# end the connection (about 2 min; Dovecot itself says "* OK Still here" every 2 min).
KEEPALIVE = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 20), ("TCP_KEEPCNT", 3))

ChangeHandler = Callable[[str], None]  # the changed folder's raw (server) name


@dataclass(frozen=True)
class PushLogin:
    """Where and as whom to connect (credentials decrypted by the caller, the watcher)."""

    host: str
    port: int
    security: str  # "ssl", "starttls", "none"
    username: str
    password: str | BearerToken = field(repr=False)  # an OAuth2 account's access token
    connect_address: str | None = None
    ca_file: str | None = None
    timeout: float = 30.0


class PushClient:
    """One IMAP connection that listens for changes; see the module docstring."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.capabilities: frozenset[str] = frozenset()
        self.selected: str | None = None
        self.notify = False  # NOTIFY SET accepted: every personal mailbox is heard
        self._tag = 0
        self._on_change: ChangeHandler | None = None
        self._next: asyncio.Future[Response] | None = None  # a read in progress

    # --- connection set-up ----------------------------------------------------------
    @classmethod
    async def connect(cls, login: PushLogin) -> PushClient:
        """Open, greet, secure and log in; raise RemoteAuthError/RemoteTemporaryError."""
        context = tls_context(login.ca_file) if login.security != "none" else None
        address = login.connect_address or login.host
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    address,
                    login.port,
                    ssl=context if login.security == "ssl" else None,
                    server_hostname=login.host if login.security == "ssl" else None,
                    limit=MAX_LINE,
                ),
                login.timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise RemoteTemporaryError(f"IMAP connection failed: {exc!r}") from exc
        keep_alive(writer)
        client = cls(reader, writer, login.timeout)
        try:
            await client._set_up(login, context)
        except BaseException:
            client.close()
            raise
        return client

    async def _set_up(self, login: PushLogin, context: ssl.SSLContext | None) -> None:
        greeting = await self.read()
        if greeting.kind == "BYE" or greeting.kind not in {"OK", "PREAUTH"}:
            raise RemoteTemporaryError(f"IMAP server refused the connection: {greeting.text}")
        if login.security == "starttls":
            await self._starttls(login.host, context)
        if isinstance(login.password, BearerToken):
            await self.authenticate(login.username, login.password, login.host, login.port)
        else:
            await self.login(login.username, login.password)
        if "CONDSTORE" in self.capabilities and "ENABLE" in self.capabilities:
            await self.run(b"ENABLE CONDSTORE")  # NOTIFY's STATUS then carries HIGHESTMODSEQ

    async def _starttls(self, host: str, context: ssl.SSLContext | None) -> None:
        await self.run(b"CAPABILITY")
        if "STARTTLS" not in self.capabilities or context is None:
            raise RemoteTemporaryError("IMAP server does not offer STARTTLS")
        await self.run(b"STARTTLS")
        await asyncio.wait_for(self.writer.start_tls(context, server_hostname=host), self.timeout)
        self.capabilities = frozenset()
        await self.run(b"CAPABILITY")

    async def login(self, username: str, password: str) -> None:
        """AUTHENTICATE PLAIN with SASL-IR if offered, else LOGIN (RFC 9051 §6.2)."""
        check_text(username, "username")
        check_text(password, "password")
        if not self.capabilities:
            await self.run(b"CAPABILITY")
        if {"AUTH=PLAIN", "SASL-IR"} <= self.capabilities:
            secret = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode())
            response = await self.execute(b"AUTHENTICATE PLAIN " + secret)
        else:
            parts = [b"LOGIN", astring(username), astring(password)]
            if not all(isinstance(part, bytes) for part in parts):
                raise RemoteAuthError("8-bit credentials need AUTHENTICATE PLAIN")
            response = await self.execute(b" ".join(p for p in parts if isinstance(p, bytes)))
        if response.kind == "NO" and response.code not in TEMPORARY_CODES:
            raise RemoteAuthError(
                f"IMAP login refused: {response.text}", response_code=response.code
            )
        raise_for_status(response, "IMAP login")
        if response.code != "CAPABILITY":
            await self.run(b"CAPABILITY")

    async def authenticate(self, username: str, token: BearerToken, host: str, port: int) -> None:
        """AUTHENTICATE OAUTHBEARER or XOAUTH2, as offered (RFC 7628, RFC 9051 §6.2.2).

        A refusal raises RemoteAuthError whose reason is the server's JSON error challenge.
        """
        check_text(username, "username")
        if not self.capabilities:
            await self.run(b"CAPABILITY")
        mechanism = sasl.choose_mechanism({c.removeprefix("AUTH=") for c in self.capabilities})
        message = sasl.initial_response(mechanism, username, token, host, port)
        encoded = base64.b64encode(message.encode())
        command = b"AUTHENTICATE " + mechanism.encode()
        if "SASL-IR" in self.capabilities:
            tag = await self._send(command + b" " + encoded)
        else:
            tag = await self._send(command)
            first = await self._continuation_or(tag)
            if first.kind != "+":
                sasl.check_answer(first, None)
                return await self._after_login(first)
            await self._send_line(encoded)
        reason = None
        response = await self._continuation_or(tag)
        if response.kind == "+":  # the error challenge: acknowledge it, then comes NO
            reason = sasl.challenge_reason(response.text)
            await self._send_line(base64.b64encode(sasl.ERROR_ACK[mechanism].encode()))
            response = await self._continuation_or(tag)
        sasl.check_answer(response, reason)
        await self._after_login(response)

    async def _after_login(self, response: Response) -> None:
        """RFC 9051 §6.2.2: capabilities change after login; ask unless the OK said them."""
        if response.code == "CAPABILITY":
            self.capabilities = frozenset(str(a).upper() for a in response.code_args)
        else:
            await self.run(b"CAPABILITY")

    async def examine_inbox(self) -> None:
        """EXAMINE INBOX (read-only: watching never changes \\Recent or \\Seen)."""
        await self.run(b"EXAMINE INBOX")
        self.selected = INBOX

    async def notify_all(self) -> bool:
        """NOTIFY SET for the selected mailbox and every personal one, if offered."""
        if "NOTIFY" not in self.capabilities:
            return False
        command = b"NOTIFY SET (selected " + NOTIFY_EVENTS + b") (personal " + NOTIFY_EVENTS + b")"
        response = await self.execute(command)
        self.notify = response.kind == "OK"
        return self.notify

    # --- IDLE -----------------------------------------------------------------------
    async def idle(self, on_change: ChangeHandler, renew_seconds: float) -> None:
        """IDLE until the connection fails (raises); renewed every ``renew_seconds``."""
        self._on_change = on_change
        while True:
            tag = await self._send(b"IDLE")
            response = await self.read()
            while response.kind != "+":
                if response.tag == tag:
                    raise RemoteTemporaryError(f"IDLE refused: {response.kind} {response.text}")
                self._untagged(response)
                response = await self.read()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + renew_seconds
            while (left := deadline - loop.time()) > 0:
                try:
                    self._untagged(await self.read(left))
                except TimeoutError:
                    break
            self.writer.write(b"DONE\r\n")
            await self._wait(tag)

    # --- plumbing -------------------------------------------------------------------
    async def run(self, command: bytes) -> Response:
        """Execute and require OK."""
        return raise_for_status(await self.execute(command), command.split(b" ")[0].decode())

    async def execute(self, command: bytes) -> Response:
        """Send a command and return its tagged response; untagged ones are handled."""
        return await self._wait(await self._send(command))

    async def _send(self, command: bytes) -> str:
        self._tag += 1
        tag = f"W{self._tag}"
        self.writer.write(tag.encode() + b" " + command + b"\r\n")
        await asyncio.wait_for(self.writer.drain(), self.timeout)
        return tag

    async def _send_line(self, line: bytes) -> None:
        self.writer.write(line + b"\r\n")
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def _continuation_or(self, tag: str) -> Response:
        """The next continuation request, or the tagged answer to ``tag``."""
        while True:
            response = await self.read()
            if response.kind == "+" or response.tag == tag:
                return response
            self._untagged(response)

    async def _wait(self, tag: str) -> Response:
        while True:
            response = await self.read()
            if response.tag == tag:
                if response.code == "CAPABILITY":
                    self.capabilities = frozenset(str(a).upper() for a in response.code_args)
                return response
            self._untagged(response)

    async def read(self, timeout: float | None = None) -> Response:
        """The next response; TimeoutError after ``timeout`` (default: the I/O timeout).

        A timeout never cuts a response in half: the read goes on in its task and the next
        call picks it up (IDLE's renewal times out reads on purpose).
        """
        wait = self.timeout if timeout is None else timeout
        task = self._next
        if task is None:
            task = self._next = asyncio.ensure_future(self._read_response())
        done, _pending = await asyncio.wait({task}, timeout=wait)
        if not done:
            raise TimeoutError("no response from the IMAP server")
        # Another reader (an IDLE task whose cancellation came too late) may have taken
        # this response and started the next read meanwhile: leave that one in place.
        if self._next is task:
            self._next = None
        return task.result()

    async def _read_response(self) -> Response:
        texts: list[bytes] = []
        literals: list[bytes] = []
        while True:
            line = await self._read_line()
            size = _literal_size(line)
            if size is None:
                texts.append(line)
                return parse_segments(texts, literals)
            if size > MAX_LITERAL:
                raise ImapProtocolError(f"literal of {size} bytes in push traffic")
            texts.append(line[: line.rindex(b"{")].rstrip(b"~"))
            try:
                literals.append(await self.reader.readexactly(size))
            except asyncio.IncompleteReadError as exc:
                raise RemoteTemporaryError("the IMAP server closed the connection") from exc

    async def _read_line(self) -> bytes:
        try:
            line = await self.reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError as exc:
            raise RemoteTemporaryError("the IMAP server closed the connection") from exc
        except asyncio.LimitOverrunError as exc:
            raise ImapProtocolError("response line too long for push traffic") from exc
        return line[:-2]

    def _untagged(self, response: Response) -> None:
        if response.kind == "BYE":
            raise RemoteTemporaryError(f"IMAP server closed the connection: {response.text}")
        if response.kind == "CAPABILITY":
            self.capabilities = frozenset(str(t).upper() for t in response.data)
        folder = changed_folder(response, self.selected)
        if folder is not None and self._on_change is not None:
            self._on_change(folder)

    def close(self) -> None:
        """Drop the connection (no LOGOUT: the watcher is going away or reconnecting)."""
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self.writer.close()

    async def logout(self) -> None:
        """LOGOUT politely, then close."""
        try:
            await self.execute(b"LOGOUT")
        except (RemoteTemporaryError, ImapProtocolError, OSError, TimeoutError):
            pass
        finally:
            self.close()


def keep_alive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive probes: a peer gone without a FIN (a host lost, a NAT that forgot
    us) is noticed in minutes, not at the next IDLE renewal."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE:
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def changed_folder(response: Response, selected: str | None) -> str | None:
    """The raw name of the folder a push response says changed, else None."""
    if not response.untagged:
        return None
    if response.kind in SELECTED_EVENTS:
        return selected
    if response.kind == "STATUS" and response.data:
        return text_of(response.data[0])
    return None


def _literal_size(line: bytes) -> int | None:
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    digits = line[start + 1 : -1]
    return int(digits) if start >= 0 and digits.isdigit() and len(digits) < 12 else None
