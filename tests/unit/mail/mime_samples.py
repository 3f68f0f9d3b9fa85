"""Helpers that write raw test messages readably."""

from __future__ import annotations

import base64
import datetime as dt

from email_service.mail.mime.build import Mailbox, Outgoing

# Stand-ins for attachments: every byte value, so a decoding slip shows.
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def msg(text: str, crlf: bool = False) -> bytes:
    """A raw message from an indented literal: the first line's indentation is removed."""
    lines = text.rstrip().strip("\n").split("\n")
    prefix = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
    raw = "\n".join(line.removeprefix(prefix) for line in lines) + "\n"
    return raw.replace("\n", "\r\n").encode("utf-8") if crlf else raw.encode("utf-8")


def b64(data: bytes) -> str:
    """Base64 with the usual 76-character lines."""
    return base64.encodebytes(data).decode("ascii")


WHEN = dt.datetime(2026, 11, 21, 9, 30, tzinfo=dt.UTC)
ALICE = Mailbox("alice@example.test", "Alice")
BOB = Mailbox("bob@example.test", "Bob")


def outgoing(**changes: object) -> Outgoing:
    """A plain message from Alice to Bob, with ``changes``."""
    values: dict[str, object] = {
        "sender": ALICE,
        "to": [BOB],
        "subject": "Hello",
        "message_id": "<m1@example.test>",
        "date": WHEN,
        "text": "Hi Bob\n",
    }
    values.update(changes)
    return Outgoing(**values)  # type: ignore[arg-type]
