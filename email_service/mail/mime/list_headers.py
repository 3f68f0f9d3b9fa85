"""The header fields a client acts on: all of them in order, and the list and automation
fields parsed (RFC 2369 List-*, RFC 8058 one-click, RFC 2919 List-Id, RFC 3834
Auto-Submitted, Precedence, RFC 8601 Authentication-Results)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from email_service.mail.mime.headers import HEADER_FIELD, decode_words, header_end, unfold

# RFC 2369 section 2: each URL in angle brackets, separated by commas; comments and white
# space around them are ignored.
ANGLE_URL = re.compile(r"<\s*([^<>\s]+)\s*>")
# RFC 8058 section 3.1: the POST body a one-click request sends, the field's only value.
ONE_CLICK = "List-Unsubscribe=One-Click"
# RFC 2919 section 2: the list identifier is the part in angle brackets.
LIST_ID = re.compile(r"<([^<>\s]+)>")
# Subject and body of an unsubscribe message whose mailto: URI gives none (RFC 2369 §3.2).
DEFAULT_MAILTO_TEXT = "unsubscribe"
# Characters kept of a mailto: URI's subject and body: a request, not a letter.
MAX_MAILTO_TEXT = 1000
# Header bytes read at most (a client needs the header, not a 10 MB one).
MAX_HEADER_BYTES = 256 * 1024


@dataclass(frozen=True)
class ClientHeaders:
    """What a client needs to offer unsubscribing and to treat automated mail."""

    unsubscribe_http: list[str] = field(default_factory=list)  # https (and http) URLs
    unsubscribe_mailto: list[str] = field(default_factory=list)
    one_click: bool = False  # RFC 8058: List-Unsubscribe-Post present, an https URL offered
    list_id: str | None = None
    auto_submitted: str | None = None  # its keyword: auto-generated, auto-replied, ...
    precedence: str | None = None  # bulk, list, junk (not standardised; widely sent)
    authentication_results: list[str] = field(default_factory=list)


def ordered_fields(raw: bytes) -> list[tuple[str, str]]:
    """Every header field of the message in order: name as sent, value unfolded and decoded."""
    end, _body = header_end(raw, 0, len(raw))
    end = min(end, MAX_HEADER_BYTES)
    pos = raw.find(b"\n") + 1 if raw.startswith(b"From ") else 0  # an mbox separator
    fields: list[tuple[str, str]] = []
    while pos < end:
        match = HEADER_FIELD.match(raw, pos, end)
        if match is None:
            pos = raw.find(b"\n", pos, end) + 1 or end
            continue
        fields.append((match.group(1).decode("ascii"), decode_words(unfold(match.group(2)))))
        pos = match.end()
    return fields


def client_headers(fields: list[tuple[str, str]]) -> ClientHeaders:
    """The list, automation and authentication fields, parsed."""
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name.lower(), []).append(value)
    urls = [u for v in values.get("list-unsubscribe", [])[:1] for u in ANGLE_URL.findall(v)]
    http = [u for u in urls if u.lower().startswith(("https://", "http://"))]
    post = values.get("list-unsubscribe-post", [])
    list_id = next(iter(LIST_ID.findall(values.get("list-id", [""])[0])), None)
    auto = values.get("auto-submitted", [""])[0].split(";")[0].strip().lower() or None
    precedence = values.get("precedence", [""])[0].strip().lower() or None
    return ClientHeaders(
        unsubscribe_http=http,
        unsubscribe_mailto=[u for u in urls if u.lower().startswith("mailto:")],
        one_click=any(p.strip() == ONE_CLICK for p in post)
        and any(u.lower().startswith("https://") for u in http),
        list_id=list_id,
        auto_submitted=auto,
        precedence=precedence,
        authentication_results=values.get("authentication-results", []),
    )


@dataclass(frozen=True)
class Mailto:
    """What a ``mailto:`` unsubscribe URI asks to send (RFC 6068 §2)."""

    to: str
    subject: str
    body: str


def parse_mailto(uri: str) -> Mailto:
    """The first address, subject and body of a mailto: URI; other fields are ignored.

    One recipient only: the list's own request address, not a list of strangers a sender
    could make the account write to. The subject is one line (no header injection).
    """
    parts = urlsplit(uri)
    addresses = [unquote(a).strip() for a in parts.path.split(",") if a.strip()]
    if parts.scheme.lower() != "mailto" or not addresses:
        raise ValueError(f"not a mailto: URI with an address: {uri[:200]!r}")
    fields: dict[str, str] = {}
    for pair in parts.query.split("&"):  # "+" is a plus in mailto: (RFC 6068 §5), not a space
        key, _, value = pair.partition("=")
        fields.setdefault(unquote(key).lower(), unquote(value))
    subject = " ".join(fields.get("subject", "").split())[:MAX_MAILTO_TEXT]
    body = fields.get("body", "").replace("\r\n", "\n")[:MAX_MAILTO_TEXT]
    return Mailto(addresses[0], subject or DEFAULT_MAILTO_TEXT, body or DEFAULT_MAILTO_TEXT)
