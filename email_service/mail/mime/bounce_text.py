"""Recipients and reasons from plain-text bounces (no RFC 3464 report), best effort.

The layouts read here::

    Postfix  <user@host>: host mx[192.0.2.1] said: 550 5.1.1 <user@host> User unknown
                 (in reply to RCPT TO command)
    qmail    <user@host>:
             192.0.2.1 does not like recipient.
             Remote host said: 550 5.1.1 User unknown
    Exim     The following address(es) failed:
               user@host
                 SMTP error from remote mail server after RCPT TO:<user@host>:
                 550 5.1.1 User unknown

A recipient's text runs to the next blank line; its status is the first RFC 3463 code in
it, else the class of the first SMTP reply code ("550" -> "5.0.0").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The returned original starts after one of these lines (qmail, Exim, Postfix, Sendmail).
ORIGINAL_MARKER = re.compile(
    r"^\s*-+\s*(below this line is a copy|this is a copy of the message"
    r"|original message|the original message|undelivered message)",
    re.IGNORECASE | re.MULTILINE,
)
ADDRESS = r"[^\s<>@:;,\"]+@[^\s<>@:;,\"]+"
# Postfix and qmail: "<user@host>:" at the start of a line, maybe with the reason after it.
ANGLE_LINE = re.compile(rf"^<({ADDRESS})>:\s*(.*)$")
# Exim lists the failed (or delayed) addresses after this line...
EXIM_INTRO = re.compile(r"address(\(es\))? (failed|ha(s|ve) not yet been delivered)", re.I)
# ...each indented on a line of its own, its reasons indented further below it.
EXIM_ADDRESS_LINE = re.compile(rf"^ {{1,3}}<?({ADDRESS})>?:?\s*$")
ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
REPLY_CODE = re.compile(r"\b([45])\d\d\b")
QUOTED_MESSAGE_ID = re.compile(r"^message-id:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
# A bounce lists a few recipients; more lines than this are not worth reading.
MAX_LINES = 2000


@dataclass
class Found:
    """A recipient a text bounce names, with the lines that explain it."""

    address: str
    lines: list[str] = field(default_factory=list)

    @property
    def diagnostic(self) -> str:
        """The explanation on one line."""
        return " ".join(line for line in self.lines if line)

    @property
    def status(self) -> str | None:
        """The RFC 3463 code in the explanation, else one from its SMTP reply code."""
        text = self.diagnostic
        if enhanced := ENHANCED_STATUS.search(text):
            return enhanced.group(1)
        reply = REPLY_CODE.search(text)
        return f"{reply.group(1)}.0.0" if reply else None


def notification(text: str) -> str:
    """The text before the returned original."""
    marker = ORIGINAL_MARKER.search(text)
    return text[: marker.start()] if marker else text


def failed_recipients(text: str) -> list[Found]:
    """The recipients a plain-text bounce reports, in order, each once."""
    found: dict[str, Found] = {}
    current: Found | None = None
    listing = False  # inside Exim's list of addresses
    for line in notification(text).splitlines()[:MAX_LINES]:
        listing = listing or bool(EXIM_INTRO.search(line))
        start = ANGLE_LINE.match(line) or (listing and EXIM_ADDRESS_LINE.match(line))
        if start:
            current = found.setdefault(start.group(1).lower(), Found(start.group(1).lower()))
            rest = start.group(2).strip() if start.re is ANGLE_LINE else ""
            current.lines.append(rest)
        elif not line.strip():
            current = None
        elif current is not None:
            current.lines.append(line.strip())
    return list(found.values())


def quoted_message_id(text: str) -> str | None:
    """The Message-ID in the returned original's header, quoted as text after the notice."""
    marker = ORIGINAL_MARKER.search(text)
    match = QUOTED_MESSAGE_ID.search(text, marker.end() if marker else 0)
    return match.group(1) if match else None
