"""Build outgoing messages with the standard library's ``EmailMessage`` (``policy.default``).

Structure (RFC 2046 §5.1; inline images per RFC 2387 multipart/related)::

    multipart/mixed                      only with attachments or a forwarded message
      multipart/alternative              only with an HTML body
        text/plain                       always (derived from the HTML if none given)
        multipart/related                only with inline images
          text/html
          image/*  (Content-ID)
      application/* ...                  attachments (RFC 2231 file names)
      message/rfc822                     the forwarded original, byte for byte

**Header injection.** Every header value, display name, address, file name, content type
and id is checked before the email package sees it: CR, LF or NUL anywhere, also inside an
RFC 2047 encoded word, is a :class:`HeaderInjectionError` (RFC 5322 §2.2: a field is one
line once unfolded). Some Python versions decode such a word while serialising and write
the newline out; so after building, the header block is parsed again and must hold exactly
the fields we set, with exactly our addresses, whatever the email package did.
"""

from __future__ import annotations

import datetime as dt
import email.header
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from email_service.errors import HeaderInjectionError, ValidationError
from email_service.mail.mime import plain
from email_service.mail.mime.headers import decode_words
from email_service.mail.mime.html import html_to_text

# CR, LF and NUL end or corrupt a header line (RFC 5322 §2.2, §2.2.3); so does every other
# character str.splitlines() breaks on (VT, FF, FS, GS, RS, NEL, U+2028, U+2029) once the
# email package folds or re-parses the header.
FORBIDDEN = re.compile("[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Characters no unquoted addr-spec contains (RFC 5322 §3.4.1): specials and whitespace.
ADDRESS_SPECIALS = re.compile(r'[\s<>()\[\]\\,;:"\x00-\x1f\x7f]')
# A msg-id as we write and accept it: one <left@right> token (RFC 5322 §3.6.4).
MSG_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")
# Replies keep the first and the newest ids; long threads would otherwise grow without
# bound (RFC 5322 §3.6.4 allows trimming, and servers reject very long header fields).
MAX_REFERENCES = 20
# "Re:" and "Fwd:" prefixes already present (any case, any count, localized "AW:"/"SV:").
REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
FORWARD_PREFIX = re.compile(r"^\s*((fwd?|wg)\s*:\s*)+", re.IGNORECASE)
# Top-level fields a built message may carry; each at most once.
ALLOWED_FIELDS = frozenset(
    {
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
# Fields every built message has; one missing means the header block was cut short.
REQUIRED_FIELDS = frozenset(
    {"from", "subject", "date", "message-id", "mime-version", "content-type"}
)
# SMTP wants CRLF on the wire (RFC 5321 §2.3.8); lines folded at 78 (RFC 5322 §2.1.1).
WIRE_POLICY = email_policy.default.clone(linesep="\r\n")
UTF8_WIRE_POLICY = email_policy.SMTPUTF8.clone(linesep="\r\n")


@dataclass(frozen=True)
class Mailbox:
    """An address with an optional display name."""

    email: str
    name: str = ""


@dataclass(frozen=True)
class FilePart:
    """An attachment; ``content_id`` (without brackets) makes an inline image of it."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class Outgoing:
    """Everything a message is built from."""

    sender: Mailbox
    to: list[Mailbox]
    subject: str
    message_id: str
    date: dt.datetime
    cc: list[Mailbox] = field(default_factory=list)
    bcc: list[Mailbox] = field(default_factory=list)  # envelope only, never a header
    text: str | None = None
    html: str | None = None
    attachments: list[FilePart] = field(default_factory=list)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    forwarded: bytes | None = None  # the original, attached as message/rfc822
    forwarded_name: str = "forwarded.eml"
    # A copy for the Drafts folder: Bcc kept as a header field (RFC 5322 §3.6.3 allows it
    # for the sender's own copy), and no recipient needed yet.
    draft: bool = False


def check_text(value: str, name: str) -> str:
    """``value`` unless it holds CR, LF or NUL, raw or RFC 2047-encoded (HeaderInjectionError)."""
    if FORBIDDEN.search(value):
        raise HeaderInjectionError(f"{name} must not contain a line break or NUL", field=name)
    if "=?" in value and FORBIDDEN.search(_decoded(value)):
        raise HeaderInjectionError(
            f"{name} must not contain an encoded line break or NUL (RFC 2047)", field=name
        )
    return value


def _decoded(value: str) -> str:
    """The text with encoded words decoded, by our decoder and by the email package's."""
    ours = decode_words(value)
    try:
        theirs = "".join(
            part.decode(charset or "ascii", "replace") if isinstance(part, bytes) else part
            for part, charset in email.header.decode_header(value)
        )
    except (LookupError, ValueError):
        theirs = ""
    return ours + theirs


def check_address(address: str, name: str = "address") -> tuple[str, str]:
    """Split an addr-spec into (local part, IDNA domain); refuse anything a header could abuse."""
    check_text(address, name)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or ADDRESS_SPECIALS.search(address):
        raise ValidationError(f"{name} is not a valid address: {address!r}", field=name)
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(f"{name} has an invalid domain: {address!r}", field=name) from None
    return local, ascii_domain


def check_msg_id(value: str, name: str = "message_id") -> str:
    """A msg-id ``<left@right>`` without spaces or controls."""
    check_text(value, name)
    if not MSG_ID.fullmatch(value):
        raise ValidationError(f"{name} is not a message id: {value!r}", field=name)
    return value


def new_message_id(sender: str) -> str:
    """A unique Message-ID under the sender's domain (RFC 5322 §3.6.4)."""
    _local, domain = check_address(sender, "from")
    return make_msgid(domain=domain)


def reply_subject(subject: str) -> str:
    """``Re: subject`` without stacking prefixes."""
    return "Re: " + REPLY_PREFIX.sub("", subject).strip()


def forward_subject(subject: str) -> str:
    """``Fwd: subject`` without stacking prefixes."""
    return "Fwd: " + FORWARD_PREFIX.sub("", subject).strip()


def reply_references(parent_id: str, parent_references: list[str]) -> list[str]:
    """The parent's References (or In-Reply-To) plus its Message-ID, trimmed (§3.6.4)."""
    chain = [r for r in parent_references if MSG_ID.fullmatch(r) and r != parent_id]
    chain.append(parent_id)
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return chain


def envelope_address(address: str) -> str:
    """The address as SMTP carries it: the domain in its IDNA (ASCII) form."""
    local, domain = check_address(address)
    return f"{local}@{domain}"


def envelope_recipients(out: Outgoing) -> list[str]:
    """To, Cc and Bcc addresses, each once, in order, as SMTP carries them."""
    seen: dict[str, None] = {}
    for box in [*out.to, *out.cc, *out.bcc]:
        seen.setdefault(envelope_address(box.email), None)
    return list(seen)


def needs_smtputf8(out: Outgoing) -> bool:
    """True if an address has a non-ASCII local part (RFC 6531)."""
    boxes = [out.sender, *out.to, *out.cc, *out.bcc]
    return any(not box.email.rpartition("@")[0].isascii() for box in boxes)


def build_message(out: Outgoing) -> bytes:
    """The message as bytes with CRLF line ends, checked for injected header fields."""
    _check_inputs(out)
    data = _plain(out)  # the common message, written directly
    if data is not None:
        verify_headers(data, out)
        return data
    return package_message(out)


def package_message(out: Outgoing) -> bytes:
    """:func:`build_message` by the email package alone (inputs checked by the caller)."""
    utf8 = needs_smtputf8(out)
    msg = EmailMessage(policy=UTF8_WIRE_POLICY if utf8 else WIRE_POLICY)
    _set_headers(msg, out)
    _set_bodies(msg, out)
    _add_attachments(msg, out)
    splice = None
    if out.forwarded is not None:
        splice = _attach_original(msg, out.forwarded, out.forwarded_name)
    data = msg.as_bytes()
    verify_headers(data, out)
    if splice is not None:
        data = data.replace(splice[0], splice[1], 1)
    return data


def _check_inputs(out: Outgoing) -> None:
    check_text(out.subject, "subject")
    for role, boxes in (("from", [out.sender]), ("to", out.to), ("cc", out.cc), ("bcc", out.bcc)):
        for box in boxes:
            check_text(box.name, f"{role}.name")
            check_address(box.email, role)
    if not (out.to or out.cc or out.bcc or out.draft):
        raise ValidationError("a message needs at least one recipient", field="to")
    check_msg_id(out.message_id)
    if out.in_reply_to is not None:
        check_msg_id(out.in_reply_to, "in_reply_to")
    for ref in out.references:
        check_msg_id(ref, "references")
    for part in out.attachments:
        check_text(part.filename, "attachment.filename")
        check_text(part.content_type, "attachment.content_type")
        if part.content_id is not None:
            check_text(part.content_id, "attachment.content_id")
    check_text(out.forwarded_name, "forward.filename")


def _plain(out: Outgoing) -> bytes | None:
    """The message as ``plain`` writes it, when it is one text part with simple fields."""
    if out.html is not None or out.attachments or out.forwarded is not None or out.text is None:
        return None
    fields: list[tuple[str, str]] = []
    shown = [("From", [out.sender]), ("To", out.to), ("Cc", out.cc)]
    for name, boxes in shown + ([("Bcc", out.bcc)] if out.draft else []):
        written = [plain.address(b.name, *check_address(b.email)) for b in boxes]
        if None in written:
            return None
        if written:
            fields.append((name, ", ".join(w for w in written if w is not None)))
    subject = plain.text_field(out.subject)
    if subject is None:
        return None
    fields += [
        ("Subject", subject),
        ("Date", format_datetime(out.date.astimezone(dt.UTC))),
        ("Message-ID", out.message_id),
    ]
    if out.in_reply_to:
        fields.append(("In-Reply-To", out.in_reply_to))
    if out.references:
        fields.append(("References", " ".join(out.references)))
    return plain.message(fields, out.text, _cte(out.text))


def _address(box: Mailbox) -> Address:
    local, domain = check_address(box.email)
    return Address(display_name=box.name, username=local, domain=domain)


def _set_headers(msg: EmailMessage, out: Outgoing) -> None:
    msg["From"] = _address(out.sender)
    if out.to:
        msg["To"] = [_address(b) for b in out.to]
    if out.cc:
        msg["Cc"] = [_address(b) for b in out.cc]
    if out.bcc and out.draft:
        msg["Bcc"] = [_address(b) for b in out.bcc]
    msg["Subject"] = out.subject
    msg["Date"] = format_datetime(out.date.astimezone(dt.UTC))
    msg["Message-ID"] = out.message_id
    if out.in_reply_to:
        msg["In-Reply-To"] = out.in_reply_to
    if out.references:
        msg["References"] = " ".join(out.references)


def _cte(text: str) -> str | None:
    """7bit when it fits, else quoted-printable: never raw 8-bit without need (RFC 6152)."""
    lines = text.splitlines()
    ascii_short = text.isascii() and all(len(line) <= 998 for line in lines)
    return None if ascii_short else "quoted-printable"


def _set_bodies(msg: EmailMessage, out: Outgoing) -> None:
    text = out.text
    if text is None:
        text = html_to_text(out.html) if out.html else ""
    msg.set_content(text, cte=_cte(text))
    if out.html is None:
        return
    msg.add_alternative(out.html, subtype="html", cte=_cte(out.html))
    html_part = list(msg.iter_parts())[1]
    for part in out.attachments:
        if part.inline and part.content_id:
            maintype, subtype = _split_type(part.content_type)
            html_part.add_related(
                part.data,
                maintype=maintype,
                subtype=subtype,
                cid=f"<{part.content_id.strip('<>')}>",
                disposition="inline",
                filename=part.filename,
            )


def _add_attachments(msg: EmailMessage, out: Outgoing) -> None:
    for file in out.attachments:
        if not (file.inline and file.content_id and out.html is not None):
            _attach(msg, file)
    for part in msg.walk():  # EmailMessage parts carry their own; only the top needs it
        if part is not msg:
            del part["MIME-Version"]


def _split_type(content_type: str) -> tuple[str, str]:
    maintype, slash, subtype = content_type.partition("/")
    if not slash or not maintype or not subtype or maintype.lower() in ("multipart", "message"):
        return "application", "octet-stream"
    return maintype.lower(), subtype.lower()


def _attach(msg: EmailMessage, part: FilePart) -> None:
    maintype, subtype = _split_type(part.content_type)
    if maintype == "text":  # bytes of unknown charset: keep them exact
        maintype, subtype = "application", "octet-stream"
    msg.add_attachment(part.data, maintype=maintype, subtype=subtype, filename=part.filename)


def _attach_original(msg: EmailMessage, original: bytes, filename: str) -> tuple[bytes, bytes]:
    """Attach a placeholder message/rfc822 part; returns (placeholder, the original's bytes).

    The email package writes a string payload of a message/rfc822 part as ASCII only, so
    the original is spliced in after generation: its bytes unchanged, CRLF line ends, 7bit
    or 8bit as RFC 2046 §5.2.1 requires.
    """
    lines = original.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    body = b"\r\n".join(lines).rstrip(b"\r\n")
    placeholder = f"forwarded-original-{secrets.token_hex(16)}"
    part = EmailMessage(policy=msg.policy)
    part["Content-Type"] = "message/rfc822"
    part["Content-Transfer-Encoding"] = "7bit" if body.isascii() else "8bit"
    part.add_header("Content-Disposition", "attachment", filename=filename)
    part.set_payload(placeholder)
    if msg.get_content_type() != "multipart/mixed":
        msg.make_mixed()
    msg.attach(part)
    for sub in msg.walk():  # boundaries the original cannot contain (RFC 2046 §5.1.1)
        if sub.is_multipart():
            sub.set_boundary(_boundary(body))
    return placeholder.encode("ascii"), body


def _boundary(body: bytes) -> str:
    while True:
        boundary = f"=_{secrets.token_hex(20)}"
        if boundary.encode("ascii") not in body:
            return boundary


def verify_headers(data: bytes, out: Outgoing) -> None:
    """Raise HeaderInjectionError unless the header block holds exactly our fields."""
    fields = _top_fields(data)
    counts = Counter(name for name, _value in fields)
    allowed = ALLOWED_FIELDS | {"bcc"} if out.draft else ALLOWED_FIELDS
    extra = sorted(n for n in counts if n not in allowed or counts[n] > 1)
    if extra:
        raise HeaderInjectionError(f"message would carry unexpected fields: {extra}")
    if not counts.keys() >= REQUIRED_FIELDS:
        raise HeaderInjectionError("message header block would end early")
    values = dict(fields)
    shown = [("from", [out.sender]), ("to", out.to), ("cc", out.cc)]
    for name, boxes in shown + ([("bcc", out.bcc)] if out.draft else []):
        written = [a for _n, a in getaddresses([values[name]])] if name in values else []
        expected = [_address(b).addr_spec for b in boxes]
        if [w.lower() for w in written] != [e.lower() for e in expected]:
            raise HeaderInjectionError(f"{name} would not carry exactly the given addresses")


def _top_fields(data: bytes) -> list[tuple[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
    fields: list[tuple[str, str]] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line)
        else:
            name, colon, value = line.partition(":")
            if not colon or FORBIDDEN.search(line) or not name.strip():
                raise HeaderInjectionError("message would carry a malformed header line")
            fields.append((name.strip().lower(), value.strip()))
    return fields
