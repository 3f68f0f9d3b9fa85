"""A message a client built itself (``message/rfc822``), made ready to send as it is.

The body is never touched. The header block is read for the envelope (To, Cc and Bcc
recipients, RFC 5321 §3.3), the ``Bcc`` field is removed so that recipients do not see it
(RFC 5322 §3.6.3 allows either), and a missing ``Message-ID`` or ``Date`` is added
(RFC 5322 §3.6: Date is required; Message-ID keeps a send traceable and idempotent).
Line ends become CRLF, as SMTP DATA carries them (RFC 5321 §2.3.8).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses

from email_service.errors import ValidationError
from email_service.mail.mime.build import envelope_address, new_message_id
from email_service.mail.mime.headers import decode_words

# The end of the header block, with either line end (RFC 5322 §2.1).
HEADER_END = re.compile(rb"\r?\n\r?\n")
# A field's first line: its name and a colon (RFC 5322 §2.2).
FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
# Recipients of one message; a larger list is a mailing, not a message.
MAX_RECIPIENTS = 500


@dataclass(frozen=True)
class RawMessage:
    """What a send needs from a client's message: its bytes and envelope."""

    data: bytes
    message_id: str
    subject: str
    recipients: list[str]


def prepare_raw(data: bytes, sender: str, now: datetime) -> RawMessage:
    """The message with CRLF line ends, no Bcc field, a Message-ID and a Date.

    ``sender`` names the domain of a new Message-ID; ``now`` dates a message without a Date.
    """
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    end = HEADER_END.search(data)
    if end is None or end.start() == 0 or b"\x00" in data[: end.start()]:
        raise ValidationError("not a message: no header block before an empty line", "body")
    head, body = data[: end.start()], data[end.start() :]
    fields = BytesHeaderParser(policy=policy.compat32).parsebytes(head + b"\r\n\r\n")
    if not fields.get_all("From"):
        raise ValidationError("the message has no From field", "From")
    named = [*fields.get_all("To", []), *fields.get_all("Cc", []), *fields.get_all("Bcc", [])]
    recipients = _recipients([str(value) for value in named])
    added = []
    message_id = str(fields.get("Message-ID") or "").strip()
    if not message_id:
        message_id = new_message_id(sender)
        added.append(b"Message-ID: " + message_id.encode() + b"\r\n")
    if not fields.get("Date"):
        added.append(b"Date: " + format_datetime(now).encode() + b"\r\n")
    subject = decode_words(str(fields.get("Subject") or "")).strip()
    return RawMessage(b"".join(added) + _without_bcc(head) + body, message_id, subject, recipients)


def _recipients(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for _name, address in getaddresses(values):
        if address:
            seen.setdefault(envelope_address(address), None)
    if not seen:
        raise ValidationError("the message has no recipient in To, Cc or Bcc", "To")
    if len(seen) > MAX_RECIPIENTS:
        raise ValidationError(f"at most {MAX_RECIPIENTS} recipients per message", "To")
    return list(seen)


def _without_bcc(head: bytes) -> bytes:
    """The header block without its Bcc fields (folded lines included)."""
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):  # a folded continuation of the field before
            if not dropping:
                kept.append(line)
            continue
        name = FIELD_NAME.match(line)
        dropping = bool(name and name.group(1).lower() == b"bcc")
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept)
