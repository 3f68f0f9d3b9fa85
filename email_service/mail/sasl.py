"""OAuth2 bearer-token SASL for IMAP and SMTP: OAUTHBEARER (RFC 7628) and XOAUTH2.

::

    client: AUTHENTICATE <mech> <initial response>      (SASL-IR, RFC 4959; else after "+")
    server: OK                                           -> logged in
    server: + <base64 JSON error>                        (RFC 7628 §3.2.2)
    client: "\\x01" (OAUTHBEARER, §3.2.3) | "" (XOAUTH2)   -> server: NO -> RemoteAuthError

OAUTHBEARER is the standard and is preferred when offered; XOAUTH2 is Google's and
Microsoft's older mechanism (Microsoft offers only it). The JSON error the server sends
(``{"status": "invalid_token", "scope": ..., "schemes": "bearer"}``) becomes the reason of
the ``RemoteAuthError``; the token itself never appears in an error, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import smtplib
from dataclasses import dataclass, field

from email_service.errors import RemoteAuthError, RemotePermanentError
from email_service.mail.imap.conn import TEMPORARY_CODES, ImapConnection, raise_for_status
from email_service.mail.imap.parse import Response

# Preference order when the server offers several (RFC 7628 is the standard one).
MECHANISMS = ("OAUTHBEARER", "XOAUTH2")
# RFC 7628 §3.1: key/value separator of the client response.
KVSEP = "\x01"
# What the client answers to an error challenge: RFC 7628 §3.2.3 asks for a lone %x01;
# XOAUTH2 (Google's description of the protocol) asks for an empty response.
ERROR_ACK = {"OAUTHBEARER": KVSEP, "XOAUTH2": ""}
# Error challenges longer than this are not decoded (they are a few hundred bytes).
MAX_CHALLENGE = 4096


@dataclass(frozen=True)
class BearerToken:
    """An OAuth2 access token used as the login credential (never printed)."""

    access_token: str = field(repr=False)

    def __str__(self) -> str:
        return "<bearer token>"


def choose_mechanism(offered: set[str] | frozenset[str]) -> str:
    """The first of MECHANISMS the server offers (upper-case names), or an error."""
    for mechanism in MECHANISMS:
        if mechanism in offered:
            return mechanism
    raise RemotePermanentError("server offers no OAuth2 mechanism (XOAUTH2, OAUTHBEARER)")


def initial_response(
    mechanism: str, username: str, token: BearerToken, host: str, port: int
) -> str:
    """The client's first message (not base64-encoded)."""
    bearer = f"auth=Bearer {token.access_token}"
    if mechanism == "XOAUTH2":
        return f"user={username}{KVSEP}{bearer}{KVSEP}{KVSEP}"
    # RFC 7628 §3.1: gs2-header "n,a=<authzid>," then kvpairs; ',' and '=' in the
    # authzid are escaped as in RFC 5801 §4.
    authzid = username.replace("=", "=3D").replace(",", "=2C")
    pairs = [f"host={host}", f"port={port}", bearer]
    return f"n,a={authzid},{KVSEP}" + "".join(p + KVSEP for p in pairs) + KVSEP


def error_reason(challenge: bytes) -> str:
    """A readable reason from the server's JSON error challenge (already base64-decoded)."""
    if len(challenge) > MAX_CHALLENGE:
        return "token refused"
    try:
        data = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "token refused"
    if not isinstance(data, dict):
        return "token refused"
    parts = [f"{key}={data[key]}" for key in ("status", "scope") if data.get(key)]
    return "token refused: " + ", ".join(parts) if parts else "token refused"


def challenge_reason(text: str) -> str:
    """The reason in an error challenge as the server sent it (base64 of the JSON)."""
    try:
        decoded = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    return error_reason(decoded)


# ---- IMAP (RFC 9051 §6.2.2 AUTHENTICATE) ----------------------------------------------


def imap_authenticate(conn: ImapConnection, username: str, token: BearerToken, port: int) -> None:
    """AUTHENTICATE with the token; RemoteAuthError with the server's reason if refused."""
    mechanism = choose_mechanism({c.removeprefix("AUTH=") for c in conn.capabilities})
    message = initial_response(mechanism, username, token, conn.host, port)
    encoded = base64.b64encode(message.encode())
    if "SASL-IR" in conn.capabilities:
        tag = conn.send([b"AUTHENTICATE", mechanism.encode(), encoded])
    else:
        tag = conn.send([b"AUTHENTICATE", mechanism.encode()])
        first = _next_for(conn, tag)
        if first.kind != "+":
            check_answer(first, None)
            return
        conn.send_line(encoded)
    reason = None
    response = _next_for(conn, tag)
    if response.kind == "+":  # the error challenge; acknowledge it, then comes NO
        reason = challenge_reason(response.text)
        conn.send_line(base64.b64encode(ERROR_ACK[mechanism].encode()))
        response = _next_for(conn, tag)
    check_answer(response, reason)


def _next_for(conn: ImapConnection, tag: bytes) -> Response:
    """The next continuation or the tagged answer to ``tag`` (untagged ones are skipped)."""
    expected = tag.decode("ascii")
    while True:
        response = conn.read()
        if response.kind == "+" or response.tag == expected:
            return response
        if not response.untagged:
            raise RemotePermanentError(f"IMAP answer for an unknown tag {response.tag!r}")


def check_answer(response: Response, reason: str | None) -> None:
    """Nothing if the AUTHENTICATE answer is OK; else the refusal, with the server's reason."""
    if response.kind == "+":
        raise RemotePermanentError("IMAP server asked for more than one OAuth2 exchange")
    if response.kind == "NO" and response.code not in TEMPORARY_CODES:
        text = f"IMAP login refused: {response.text}" + (f" ({reason})" if reason else "")
        raise RemoteAuthError(text, response_code=response.code, reason=reason)
    raise_for_status(response, "IMAP login")


# ---- SMTP (RFC 4954 AUTH) -------------------------------------------------------------


class _SmtpExchange:
    """smtplib's ``authobject``: the initial response, then the ack of an error challenge."""

    def __init__(self, mechanism: str, message: str) -> None:
        self.mechanism = mechanism
        self.message = message
        self.reason: str | None = None

    def __call__(self, challenge: bytes | None = None) -> str:
        if challenge is None:
            return self.message
        self.reason = error_reason(challenge)
        return ERROR_ACK[self.mechanism]


def smtp_authenticate(
    smtp: smtplib.SMTP, username: str, token: BearerToken, host: str, port: int
) -> None:
    """AUTH with the token after EHLO; RemoteAuthError carries the server's reason."""
    offered = {m.upper() for m in smtp.esmtp_features.get("auth", "").split()}
    mechanism = choose_mechanism(offered)
    exchange = _SmtpExchange(mechanism, initial_response(mechanism, username, token, host, port))
    try:
        smtp.auth(mechanism, exchange, initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as exc:
        text = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        reason = exchange.reason
        message = f"SMTP AUTH refused: {exc.smtp_code} {' '.join(text.split())}"
        if reason:
            message += f" ({reason})"
        if 400 <= exc.smtp_code < 500:
            raise  # temporary: the caller maps it
        raise RemoteAuthError(
            message, smtp_code=exc.smtp_code, stage="AUTH", reason=reason
        ) from None
