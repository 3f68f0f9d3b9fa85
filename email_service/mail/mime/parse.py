"""Parse raw messages for a mail client and a search index: fast, bounded, never failing.

The parser finds the entity tree by byte offsets (header blocks split by hand, multipart bodies
split with ``bytes.find``) instead of building ``email.message`` objects: only the header
fields asked for are decoded, only the text parts chosen as body are transfer- and
charset-decoded, and attachments are measured, not decoded. ``extract_part`` decodes one part
later, found again by its index.

Forms chosen, so every caller stores the same thing:

- Message ids (``message_id``, ``in_reply_to``, ``references``) keep their angle brackets,
  ``<local@domain>``, inner whitespace removed (RFC 5322 section 3.6.4): the form a reply
  copies into In-Reply-To/References. Ids written without brackets get them.
- Content ids (``AttachmentInfo.content_id``) are without brackets, the form a ``cid:`` URL
  uses (RFC 2392), so ``sanitize_html(cid_urls=...)`` maps them directly.
- ``AttachmentInfo.index`` is the depth-first position of the part in the whole tree (the
  message itself is 0; parts inside forwarded messages are numbered too), stable for a given
  raw message and the same ``Limits``.
- ``text`` and ``html`` are None when the message has no such body; ``html`` is unsanitized.
  A forwarded ``message/rfc822`` is an attachment, and its body becomes the message's body
  only when the message has no body of its own (see ``mime_body``).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from html import escape
from typing import TypedDict

from email_service.errors import NotFoundError
from email_service.mail.mime.body import attachment_parts, choose_bodies
from email_service.mail.mime.headers import (
    CONTROL,
    HeaderBlock,
    decode_words,
    normalize_ws,
    parse_addresses,
    parse_date,
    parse_header_block,
    parse_msgid,
    parse_msgid_list,
)
from email_service.mail.mime.parts import MESSAGE_TYPES, Part, TreeBuilder

# Header fields a client or the sync engine acts on (RFC 2369/2919 lists, RFC 3834 replies).
INTEREST_HEADERS = (
    "list-id",
    "list-post",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "auto-submitted",
    "precedence",
    "x-auto-response-suppress",
    "importance",
    "x-priority",
    "return-path",
    "x-spam-flag",
)
# RFC 5322 section 2.1.1 line limit: longer values of these fields are junk, and columns need a cap.
MAX_FIELD_CHARS = 998
# The first few lines of the body are enough to find the snippet; never scan a whole novel.
SNIPPET_SCAN_FACTOR = 20
# RFC 3676 section 4.3 "-- ", Outlook's rule and reply header, mobile footers: the rest is noise.
SIGNATURE_LINE = re.compile(
    r"(--\s?|_{10,}|-{3,}\s*original message\s*-{3,}|sent from my \w[\w ]*)", re.IGNORECASE
)
# The ">" marks (and blanks between them) that start quoted lines (RFC 3676 section 4.5).
QUOTE_MARKS = re.compile(r"^[>\s]+", re.MULTILINE)
# Characters that mean something to a file system or shell (Windows' list is the longest).
FILENAME_RESERVED = frozenset('<>:"|?*')
# Windows device names, refused as file names whatever the extension.
WINDOWS_DEVICE = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\..*)?", re.IGNORECASE)
# ext4 and NTFS allow 255 bytes; leave room for the " (1)" a browser adds to a duplicate.
MAX_FILENAME_BYTES = 200
# An extension longer than this is part of the name, not worth keeping when cutting.
MAX_EXTENSION_CHARS = 16


@dataclass(frozen=True, slots=True)
class Limits:
    """What one message may cost the parser; exceeding any sets ``parse_error``."""

    # Above the 50 MB that the largest providers accept, so any deliverable message parses.
    max_message_bytes: int = 64 * 1024 * 1024
    # Real header blocks stay under 20 KiB even with long Received/ARC chains; 256 KiB still
    # holds thousands of recipients.
    max_header_bytes: int = 256 * 1024
    # Clients write a few dozen parts at most; each part costs a Python object and a lookup.
    max_parts: int = 1000
    # Real mail nests about four levels (mixed > alternative > related) plus a few forwards;
    # deeper nesting is an attack on the parser (multipart and message/rfc822 combined).
    max_depth: int = 20
    # A million characters is some 500 printed pages: longer is machine output that would
    # only bloat the search index (applies to text and to HTML separately).
    max_text_chars: int = 1_000_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: display name (decoded, may be empty) and address (as written)."""

    name: str
    email: str


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """A part that is not the body, with its decoded size in bytes."""

    index: int
    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    disposition: str | None
    is_inline: bool


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What a client and the search index need from one message."""

    message_id: str | None = None  # "<local@domain>"
    in_reply_to: str | None = None  # its first msg-id
    references: list[str] = field(default_factory=list)  # in order, deduplicated
    subject: str = ""  # decoded, on one line
    from_: list[Address] = field(default_factory=list)
    sender: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    date: dt.datetime | None = None  # aware; None when missing or invalid
    text: str | None = None  # None: no plain body (derive it with html.html_to_text)
    html: str | None = None  # unsanitized
    attachments: list[AttachmentInfo] = field(default_factory=list)
    # True when an attachment is not an inline part referenced by its Content-ID
    has_attachments: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # INTEREST_HEADERS present
    parse_error: str | None = None  # limits hit or broken structure, "; "-joined


def parse_message(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse a raw message; bad input never raises but sets ``parse_error``."""
    if len(raw) > limits.max_message_bytes:
        headers = parse_header_block(raw, 0, len(raw), limits.max_header_bytes)
        error = f"message over {limits.max_message_bytes} bytes: body not parsed"
        return ParsedMessage(**envelope(headers), parse_error=error)
    builder = TreeBuilder(limits.max_header_bytes, limits.max_parts, limits.max_depth)
    root = builder.build(raw)
    bodies, used = choose_bodies(root)
    text = join_text(bodies.text, limits.max_text_chars)
    html = join_html(bodies.html, limits.max_text_chars)
    errors = builder.errors
    for name, value in (("text", text), ("html", html)):
        if value is not None and len(value) > limits.max_text_chars:
            errors.append(f"{name} over {limits.max_text_chars} characters: cut")
    attachments = [attachment_info(part) for part in attachment_parts(root, used)]
    return ParsedMessage(
        **envelope(root.headers),
        text=None if text is None else text[: limits.max_text_chars],
        html=None if html is None else html[: limits.max_text_chars],
        attachments=attachments,
        has_attachments=any(not a.is_inline or a.content_id is None for a in attachments),
        parse_error="; ".join(errors) or None,
    )


class Envelope(TypedDict):
    """The header-derived fields of ParsedMessage."""

    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    from_: list[Address]
    sender: list[Address]
    reply_to: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    date: dt.datetime | None
    headers: dict[str, str]


def envelope(headers: HeaderBlock) -> Envelope:
    """The header-derived fields of ParsedMessage."""
    return {
        "message_id": parse_msgid(headers.get("message-id")),
        "in_reply_to": parse_msgid(headers.get("in-reply-to")),
        "references": parse_msgid_list(" ".join(headers.get_all("references"))),
        "subject": field_text(headers.get("subject")),
        "from_": addresses(headers, "from"),
        "sender": addresses(headers, "sender"),
        "reply_to": addresses(headers, "reply-to"),
        "to": addresses(headers, "to"),
        "cc": addresses(headers, "cc"),
        "bcc": addresses(headers, "bcc"),
        "date": parse_date(headers.get("date")),
        "headers": {n: field_text(v) for n in INTEREST_HEADERS if (v := headers.get(n))},
    }


def field_text(value: str | None) -> str:
    """An unstructured field as one line of text: RFC 2047-decoded, whitespace collapsed."""
    return normalize_ws(CONTROL.sub(" ", decode_words(value or "")))[:MAX_FIELD_CHARS]


def addresses(headers: HeaderBlock, name: str) -> list[Address]:
    """Every mailbox of every occurrence of an address field."""
    return [Address(n, e) for n, e in parse_addresses(headers.get_all(name))]


def join_text(parts: list[Part], max_chars: int) -> str | None:
    """The decoded text parts, one after another, stopping once past max_chars."""
    if not parts:
        return None
    pieces: list[str] = []
    total = 0
    for part in parts:
        if total > max_chars:
            break
        pieces.append(part.text(max_chars - total + 1))
        total += len(pieces[-1]) + 1
    return "\n".join(pieces)


def join_html(parts: list[tuple[Part, bool]], max_chars: int) -> str | None:
    """The decoded HTML parts; plain parts among them become escaped pre-wrapped blocks."""
    if not parts:
        return None
    pieces: list[str] = []
    total = 0
    for part, plain in parts:
        if total > max_chars:
            break
        text = part.text(max_chars - total + 1)
        if plain:
            text = f'<div style="white-space:pre-wrap">{escape(text, quote=False)}</div>'
        pieces.append(text)
        total += len(text)
    return "\n".join(pieces)


def attachment_info(part: Part) -> AttachmentInfo:
    """Describe one part as an attachment."""
    disposition = part.disposition()
    content_id = part.content_id()
    inline = disposition == "inline" or (disposition is None and content_id is not None)
    return AttachmentInfo(
        index=part.index,
        filename=part.filename() or forwarded_name(part),
        content_type=part.ctype,
        size=part.decoded_size(),
        content_id=content_id,
        disposition=disposition,
        is_inline=inline,
    )


def forwarded_name(part: Part) -> str | None:
    """A file name for a forwarded message: its subject with ``.eml``."""
    if part.ctype not in MESSAGE_TYPES:
        return None
    subject = field_text(part.children[0].headers.get("subject")) if part.children else ""
    return f"{subject or 'message'}.eml"


def extract_part(
    raw: bytes, index: int, limits: Limits = DEFAULT_LIMITS
) -> tuple[AttachmentInfo, bytes]:
    """The description and decoded bytes of part ``index``; NotFoundError if there is none."""
    if len(raw) <= limits.max_message_bytes:
        root = TreeBuilder(limits.max_header_bytes, limits.max_parts, limits.max_depth).build(raw)
        for part in root.walk():
            if part.index == index and not (part.is_multipart and part.children):
                return attachment_info(part), part.payload()
    raise NotFoundError("no such message part", index=index)


def safe_filename(name: str | None, fallback: str) -> str:
    """A file name safe for Content-Disposition and any file system; unicode kept."""
    return clean_filename(name or "") or clean_filename(fallback) or "attachment"


def clean_filename(name: str) -> str:
    """The last path component without controls, reserved characters or leading dots."""
    name = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    kept = "".join(
        ("_" if ch in FILENAME_RESERVED else ch)
        if not unicodedata.category(ch).startswith("C")  # controls, bidi overrides, unassigned
        else (" " if ch.isspace() else "")
        for ch in name
    )
    name = " ".join(kept.split()).strip(". ")
    if WINDOWS_DEVICE.fullmatch(name):
        name = "_" + name
    return cut_filename(name)


def cut_filename(name: str) -> str:
    """Shorten to MAX_FILENAME_BYTES of UTF-8, keeping a short extension."""
    if len(name.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > MAX_EXTENSION_CHARS:
        stem, extension = name, ""
    room = MAX_FILENAME_BYTES - len(extension.encode("utf-8")) - (1 if extension else 0)
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ")
    return f"{stem}.{extension}" if extension else stem


def make_snippet(text: str, length: int = 200) -> str:
    """A one-line preview: quotes, reply headers and the signature left out."""
    lines = text[: length * SNIPPET_SCAN_FACTOR].splitlines()
    kept: list[str] = []
    size = 0
    for number, line in enumerate(lines):
        stripped = line.strip()
        if SIGNATURE_LINE.fullmatch(stripped):
            break
        if stripped.startswith(">") or (stripped.endswith(":") and quote_follows(lines, number)):
            continue
        kept.append(stripped)
        size += len(stripped) + 1
        if size > length:
            break
    snippet = " ".join(" ".join(kept).split())
    if not snippet:  # nothing but quotes: better the quoted text than nothing
        snippet = " ".join(QUOTE_MARKS.sub("", text[: length * SNIPPET_SCAN_FACTOR]).split())
    return shorten(snippet, length)


def quote_follows(lines: list[str], number: int) -> bool:
    """Whether the next non-blank line is quoted (so this one is "On ... wrote:")."""
    following = (line.strip() for line in lines[number + 1 :])
    return next((line for line in following if line), "").startswith(">")


def shorten(text: str, length: int) -> str:
    """Cut to at most length characters at a word boundary, marking the cut with an ellipsis."""
    if len(text) <= length:
        return text
    cut = text[: max(length - 1, 0)]
    space = cut.rfind(" ")
    if space > length * 0.6:
        cut = cut[:space]
    return cut.rstrip() + "…" if length > 0 else ""
