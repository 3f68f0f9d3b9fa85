"""Connection set-up: greeting, STARTTLS, authentication, ENABLE (in that order).

::

    greeting --OK--> [STARTTLS -> TLS handshake -> CAPABILITY] --> AUTHENTICATE PLAIN | LOGIN
             --PREAUTH--> (refused if STARTTLS was asked: it would stay plaintext)
             --BYE--> RemoteTemporaryError
    logged in --> CAPABILITY (unless the OK carried it) --> ENABLE QRESYNC (if offered)

Credentials never travel in plaintext when the server says LOGINDISABLED, and a
connection that asked for STARTTLS never logs in without it (RFC 9051 §6.2.1,
RFC 2595 §3.1).
"""

from __future__ import annotations

import base64

from email_service.errors import RemoteAuthError, RemotePermanentError, RemoteTemporaryError
from email_service.mail.imap.codec import astring, check_text
from email_service.mail.imap.conn import (
    TEMPORARY_CODES,
    ImapConnection,
    raise_for_status,
    tls_context,
)
from email_service.mail.imap.parse import ImapProtocolError, Response


def greet(conn: ImapConnection) -> bool:
    """Read the greeting (RFC 9051 §7.1.1, §7.1.4, §7.1.5); True if pre-authenticated."""
    greeting = conn.read()
    if greeting.kind == "BYE":
        conn.close()
        raise RemoteTemporaryError(f"IMAP server refused the connection: {greeting.text}")
    if not greeting.untagged or greeting.kind not in {"OK", "PREAUTH"}:
        conn.close()
        raise ImapProtocolError(f"unexpected IMAP greeting {greeting.kind}")
    return greeting.kind == "PREAUTH"


def refresh_capabilities(conn: ImapConnection) -> None:
    """Ask for CAPABILITY; the answer updates ``conn.capabilities``."""
    conn.run([b"CAPABILITY"], "CAPABILITY")


def starttls(conn: ImapConnection, host: str, ca_file: str | None, preauth: bool) -> None:
    """Upgrade to verified TLS, or refuse to go on (RFC 9051 §6.2.1)."""
    if preauth:
        raise RemotePermanentError("IMAP server pre-authenticated a plaintext connection")
    if not conn.capabilities:
        refresh_capabilities(conn)
    if "STARTTLS" not in conn.capabilities:
        raise RemotePermanentError("IMAP server does not offer STARTTLS")
    conn.run([b"STARTTLS"], "STARTTLS")
    conn.starttls(tls_context(ca_file), host)
    conn.capabilities = frozenset()  # what was said in the clear may have been forged
    refresh_capabilities(conn)


def login(conn: ImapConnection, username: str, password: str) -> None:
    """AUTHENTICATE PLAIN if offered, else LOGIN unless LOGINDISABLED (RFC 9051 §6.2)."""
    check_text(username, "username")
    check_text(password, "password")
    if not conn.capabilities:
        refresh_capabilities(conn)
    if "AUTH=PLAIN" in conn.capabilities:
        response = _authenticate_plain(conn, username, password)
    elif "LOGINDISABLED" in conn.capabilities:
        raise RemotePermanentError("IMAP server refuses to log in on this connection (no TLS)")
    else:
        command = [b"LOGIN", astring(username, "username"), astring(password, "password")]
        response = conn.execute(command)
    _check_login(response)
    if response.code != "CAPABILITY":
        refresh_capabilities(conn)  # RFC 9051 §6.2.2: capabilities change after login


def _authenticate_plain(conn: ImapConnection, username: str, password: str) -> Response:
    """AUTHENTICATE PLAIN (RFC 4616), in one round trip with SASL-IR (RFC 4959)."""
    secret = b"\0" + username.encode() + b"\0" + password.encode()
    encoded = base64.b64encode(secret)
    if "SASL-IR" in conn.capabilities:
        return conn.execute([b"AUTHENTICATE", b"PLAIN", encoded])
    tag = conn.send([b"AUTHENTICATE", b"PLAIN"])
    refused = conn.wait_continuation(tag, lambda _response: None)
    if refused is not None:
        return refused
    conn.send_line(encoded)
    return conn.wait(tag)


def _check_login(response: Response) -> None:
    if response.kind == "NO" and response.code not in TEMPORARY_CODES:
        raise RemoteAuthError(f"IMAP login refused: {response.text}", response_code=response.code)
    raise_for_status(response, "IMAP login")


def enable(conn: ImapConnection) -> None:
    """ENABLE QRESYNC when offered (RFC 7162 §3.2.3; it implies CONDSTORE)."""
    if {"QRESYNC", "ENABLE"} <= conn.capabilities:
        conn.run([b"ENABLE", b"QRESYNC"], "ENABLE QRESYNC")
