"""SMTP submission over the standard library's ``smtplib``: verified TLS, AUTH, a small pool.

What a failure means depends on how far the transaction got (RFC 5321 §3.3, §4.1.1.4)::

    connect, greeting, EHLO, STARTTLS, AUTH   4xx, timeout, lost connection -> RemoteTemporaryError
    MAIL, RCPT, DATA, the message body        5xx -> RemotePermanentError (535 -> RemoteAuthError)
    ------------------------ final "." sent ------------------------------------------------
    reply to the final "."                    2xx sent; 4xx temporary; 5xx permanent
    no reply (timeout, lost connection)       SmtpAmbiguousError: the server may have taken
                                              the message; never resend it blindly

Until the final ``.`` the server holds nothing (a transaction cut short is discarded), so a
retry cannot duplicate. ``before_final_dot`` lets the caller fence that moment: it runs
after the body and before the ``.``; if it raises, the connection is dropped unfinished.

Errors carry ``smtp_code``/``smtp_reply`` in ``details`` when the server said something.

Given an ``envid`` and a server that lists DSN in its EHLO answer, the transaction asks for
delivery status notifications (RFC 3461): ``MAIL FROM:<..> RET=HDRS ENVID=<xtext>`` and
``RCPT TO:<..> NOTIFY=FAILURE,DELAY ORCPT=rfc822;<xtext>``, so a bounce names the send it
is about (mail/mime/dsn.py reads it).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from email_service.errors import (
    HeaderInjectionError,
    RemoteAuthError,
    RemoteError,
    RemotePermanentError,
    RemoteTemporaryError,
)
from email_service.mail import sasl
from email_service.mail.mime.dsn import xtext_encode
from email_service.mail.sasl import BearerToken

SECURITY_MODES = ("ssl", "starttls", "none")
# CR, LF, NUL in an envelope address would end the command line (RFC 5321 §4.1.1.2).
FORBIDDEN = re.compile(r"[\r\n\x00]")
# Envelope addresses: no spaces, brackets or controls (RFC 5321 §4.1.2 Mailbox, unquoted).
ADDRESS_ATOM = r'[^\s<>()\[\]\\,;:"@\x00-\x1f\x7f]+'
ENVELOPE_ADDRESS = re.compile(f"{ADDRESS_ATOM}@{ADDRESS_ATOM}")
# Lines starting with "." get another one (RFC 5321 §4.5.2, transparency).
LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
# Body chunk per sendall: SMTP_TIMEOUT then bounds each chunk, not the whole message.
SEND_CHUNK = 64 * 1024
# An idle pooled connection older than this is closed, well before servers give up on
# idle clients (RFC 5321 §4.5.3.2.7 asks servers for at least 5 minutes).
POOL_IDLE_SECONDS = 30.0
# Messages per connection before a fresh one: spreads load across server processes.
POOL_MAX_MESSAGES = 1000
# RFC 3461 §4.1: report failures and delays; success is the 250 we already have. The
# returned original is its header only (§4.3): enough to recognise it, not its size again.
DSN_NOTIFY = "NOTIFY=FAILURE,DELAY"
DSN_RETURN = "RET=HDRS"


class SmtpAmbiguousError(RemoteError):
    """The final ``.`` was sent but no reply came: the message may or may not be accepted."""

    code = "remote_ambiguous"


@dataclass(frozen=True)
class SmtpTarget:
    """Where and as whom to submit; ``connect_address`` is the vetted address to dial."""

    host: str
    port: int
    security: str
    username: str
    password: str | BearerToken = field(repr=False)  # a token logs in with OAUTHBEARER/XOAUTH2
    timeout: float = 30.0
    connect_address: str | None = None
    ca_file: str | None = None
    local_hostname: str = "localhost"


@dataclass(frozen=True)
class SmtpReply:
    """The server's answer to the final ``.`` (RFC 5321 §4.2)."""

    code: int
    text: str


class _Client(smtplib.SMTP):
    """smtplib.SMTP that dials a given address and, for implicit TLS, verifies ``host``."""

    def __init__(self, target: SmtpTarget, context: ssl.SSLContext) -> None:
        self._target = target
        self._context = context
        super().__init__(local_hostname=target.local_hostname, timeout=target.timeout)
        # starttls() verifies against self._host, which only __init__ (not connect()) sets.
        self._host = target.host

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        address = self._target.connect_address or host
        sock = socket.create_connection((address, port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._target.security == "ssl":  # RFC 8314 §3.3: TLS from the first byte
                return self._context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return sock


def _reply_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())


def reply_error(stage: str, code: int, raw: bytes | str) -> RemoteError:
    """The error for a refusing reply: 4xx temporary, 5xx permanent (RFC 5321 §4.2.1)."""
    text = _reply_text(raw)
    message = f"SMTP {stage} refused: {code} {text}".strip()
    details: dict[str, Any] = {"smtp_code": code, "smtp_reply": text, "stage": stage}
    if 400 <= code < 500:
        return RemoteTemporaryError(message, **details)
    if stage == "AUTH" and code in (530, 534, 535, 538):
        return RemoteAuthError(message, **details)
    return RemotePermanentError(message, **details)


def check_envelope_address(address: str) -> str:
    """An address fit for MAIL FROM/RCPT TO, or HeaderInjectionError."""
    if FORBIDDEN.search(address):
        raise HeaderInjectionError("envelope address must not contain CR, LF or NUL")
    if not ENVELOPE_ADDRESS.fullmatch(address):
        raise HeaderInjectionError(f"not a plain envelope address: {address!r}")
    return address


def _rcpt_options(rcpt: str) -> list[str]:
    """NOTIFY, and ORCPT for an ASCII address (RFC 3461 §4.2; UTF-8 ones need RFC 6533)."""
    if not rcpt.isascii():
        return [DSN_NOTIFY]
    return [DSN_NOTIFY, f"ORCPT=rfc822;{xtext_encode(rcpt)}"]


class SmtpSession:
    """One connected, authenticated SMTP connection (used by one thread at a time)."""

    def __init__(self, target: SmtpTarget) -> None:
        if target.security not in SECURITY_MODES:
            raise RemotePermanentError(f"security must be one of {SECURITY_MODES}")
        self.target = target
        self.sent = 0
        self.stage = "connect"  # where the current transaction is, for error reports
        self.last_used = time.monotonic()
        context = ssl.create_default_context(cafile=target.ca_file)
        self._smtp = _Client(target, context)
        try:
            self._open(context)
        except BaseException:
            self.abort()
            raise

    def _open(self, context: ssl.SSLContext) -> None:
        stage = "connect"
        try:
            code, text = self._smtp.connect(self.target.host, self.target.port)
            if code != 220:
                raise reply_error("greeting", code, text)
            stage = "EHLO"
            self._ehlo()
            if self.target.security == "starttls":
                stage = "STARTTLS"
                self._starttls(context)
            stage = "AUTH"
            self._login()
        except smtplib.SMTPResponseException as exc:
            raise reply_error(stage, exc.smtp_code, exc.smtp_error) from None
        except ssl.SSLCertVerificationError as exc:  # will not verify on a retry either
            raise RemotePermanentError(f"SMTP TLS failed: {exc}", stage=stage) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RemoteTemporaryError(f"SMTP {stage} failed: {exc}", stage=stage) from None

    def _ehlo(self) -> None:
        code, text = self._smtp.ehlo()
        if code != 250:
            raise reply_error("EHLO", code, text)

    def _starttls(self, context: ssl.SSLContext) -> None:
        """RFC 3207: never continue in plaintext when TLS was asked for."""
        if not self._smtp.has_extn("starttls"):
            raise RemotePermanentError("SMTP server does not offer STARTTLS", stage="STARTTLS")
        code, text = self._smtp.starttls(context=context)
        if code != 220:
            raise reply_error("STARTTLS", code, text)
        self._ehlo()  # §4.2: forget what was said in the clear

    def _login(self) -> None:
        if not self._smtp.has_extn("auth"):
            return  # a trusted relay that asks for no AUTH
        target, secret = self.target, self.target.password
        if isinstance(secret, BearerToken):
            sasl.smtp_authenticate(self._smtp, target.username, secret, target.host, target.port)
            return
        try:
            self._smtp.login(target.username, secret)
        except smtplib.SMTPAuthenticationError as exc:
            raise reply_error("AUTH", exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPException as exc:  # no mechanism in common
            raise RemotePermanentError(f"SMTP AUTH impossible: {exc}", stage="AUTH") from None

    def send_message(
        self,
        sender: str,
        recipients: list[str],
        data: bytes,
        *,
        smtputf8: bool = False,
        before_final_dot: Callable[[], None] | None = None,
        envid: str | None = None,
    ) -> SmtpReply:
        """One mail transaction; see the module docstring for what each failure means."""
        check_envelope_address(sender)
        for rcpt in recipients:
            check_envelope_address(rcpt)
        if not recipients:
            raise RemotePermanentError("no recipients", stage="RCPT")
        self.stage = "MAIL"
        try:
            self._envelope(sender, recipients, data, smtputf8, envid)
            self._data(data, before_final_dot)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.abort()  # before the final ".": the server keeps nothing (§4.1.1.4)
            raise RemoteTemporaryError(
                f"SMTP connection lost at {self.stage}: {exc}",
                stage=self.stage,
                connection_lost=True,
            ) from None
        return self._final_reply()

    def _envelope(
        self, sender: str, recipients: list[str], data: bytes, utf8: bool, envid: str | None
    ) -> None:
        dsn = envid is not None and self._smtp.has_extn("dsn")
        options = self._mail_options(data, utf8)
        if dsn and envid is not None:
            options += [DSN_RETURN, f"ENVID={xtext_encode(envid)}"]
        code, text = self._smtp.mail(sender, options)
        if code != 250:
            self._abort()
            raise reply_error("MAIL", code, text)
        refused = []
        self.stage = "RCPT"
        for rcpt in recipients:
            code, text = self._smtp.rcpt(rcpt, _rcpt_options(rcpt) if dsn else ())
            if code not in (250, 251):
                refused.append((rcpt, code, text))
        if refused:  # like a mail client: all recipients or none (RFC 5321 §3.3)
            self._abort()
            rcpt, code, text = max(refused, key=lambda r: r[1])  # a 5xx decides
            raise reply_error(f"RCPT {rcpt}", code, text)

    def _mail_options(self, data: bytes, utf8: bool) -> list[str]:
        options = []
        if self._smtp.has_extn("size"):
            options.append(f"SIZE={len(data)}")  # RFC 1870: refused early if too big
        if not data.isascii():
            if not self._smtp.has_extn("8bitmime"):
                raise RemotePermanentError("server lacks 8BITMIME for an 8-bit message")
            options.append("BODY=8BITMIME")  # RFC 6152
        if utf8:
            if not self._smtp.has_extn("smtputf8"):
                raise RemotePermanentError("server lacks SMTPUTF8 for a non-ASCII address")
            options.append("SMTPUTF8")  # RFC 6531 §3.4
        return options

    def _data(self, data: bytes, before_final_dot: Callable[[], None] | None) -> None:
        self.stage = "DATA"
        code, text = self._smtp.docmd("DATA")
        if code != 354:
            self._abort()
            raise reply_error("DATA", code, text)
        body = LEADING_DOT.sub(b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.stage = "body"
        for start in range(0, len(body), SEND_CHUNK):
            self._smtp.send(body[start : start + SEND_CHUNK])
        if before_final_dot is not None:
            try:
                before_final_dot()
            except BaseException:
                self.abort()  # unfinished DATA: the server discards it (§4.1.1.4)
                raise
        self._smtp.send(b".\r\n")

    def _final_reply(self) -> SmtpReply:
        try:
            code, text = self._smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.abort()
            raise SmtpAmbiguousError(
                f"no reply after the end of the message: {exc}", stage="DATA-END"
            ) from None
        if code < 200:  # smtplib's -1: the reply was cut off
            self.abort()
            raise SmtpAmbiguousError("malformed reply after the end of the message")
        self.sent += 1
        self.last_used = time.monotonic()
        if code != 250:
            raise reply_error("end of DATA", code, text)
        return SmtpReply(code, _reply_text(text))

    def _abort(self) -> None:
        """RSET after a refusal so the connection can be reused; close if that fails."""
        try:
            code, _text = self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self.abort()

    @property
    def usable(self) -> bool:
        """Still connected, not idle too long, not used too often."""
        fresh = time.monotonic() - self.last_used < POOL_IDLE_SECONDS
        return self._smtp.sock is not None and fresh and self.sent < POOL_MAX_MESSAGES

    def abort(self) -> None:
        """Drop the connection without QUIT (mid-DATA, QUIT would be message text)."""
        self._smtp.close()

    def close(self) -> None:
        """QUIT if still connected, then close; errors on the way out are not reported."""
        try:
            if self._smtp.sock is not None:
                self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self._smtp.close()
