"""The MIME entity tree (RFC 2045/2046), found by offsets: payloads are decoded only on demand."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from email_service.mail.mime.charsets import decode_bytes
from email_service.mail.mime.headers import (
    CONTROL,
    HeaderBlock,
    lenient_b64decode,
    normalize_ws,
    parse_header_block,
    parse_params,
)

# RFC 2046 section 5.2.1 and RFC 6532 section 3.5: entities whose body is a whole message.
MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
# Transfer encodings that non-MIME mailers still write for uuencoded bodies.
UU_ENCODINGS = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})
# RFC 2045 section 5.1: type "/" subtype, each a token (checked loosely).
MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
# Encoded bytes needed for one decoded character: 4 UTF-8 bytes, 3 encoded octets per byte.
ENCODED_BYTES_PER_CHAR = 12


@dataclass(slots=True, eq=False)
class Part:
    """One entity: its header, its media type, where its body lies, and its children."""

    index: int
    depth: int
    buf: bytes
    headers: HeaderBlock
    ctype: str
    params: dict[str, str]
    start: int
    end: int
    children: list[Part] = field(default_factory=list)

    @property
    def is_multipart(self) -> bool:
        """Whether this is a multipart entity (parsed into children or not)."""
        return self.ctype.startswith("multipart/")

    def disposition(self) -> str | None:
        """The Content-Disposition type (RFC 2183), lower-cased, or None."""
        return parse_params(self.headers.get("content-disposition"))[0] or None

    def filename(self) -> str | None:
        """The declared file name (disposition filename, else type name), decoded."""
        params = parse_params(self.headers.get("content-disposition"))[1]
        name = params.get("filename") or self.params.get("name") or ""
        return normalize_ws(CONTROL.sub(" ", name)) or None

    def content_id(self) -> str | None:
        """The Content-ID without angle brackets, as a `cid:` URL names it (RFC 2392)."""
        value = self.headers.get("content-id") or ""
        return re.sub(r"\s+", "", value).strip("<>") or None

    def cte(self) -> str:
        """The Content-Transfer-Encoding (RFC 2045 section 6), lower-cased."""
        return (self.headers.get("content-transfer-encoding") or "7bit").lower()

    def payload(self, max_encoded: int | None = None) -> bytes:
        """The body with its transfer encoding undone, from at most max_encoded raw bytes."""
        end = self.end if max_encoded is None else min(self.end, self.start + max_encoded)
        data = self.buf[self.start : end]
        cte = self.cte()
        if cte == "base64":
            return lenient_b64decode(data)
        if cte == "quoted-printable":
            return binascii.a2b_qp(data)
        if cte in UU_ENCODINGS:
            return uudecode(data)
        return data

    def decoded_size(self) -> int:
        """Decoded size in bytes; base64 is measured, not decoded (exact when well-formed)."""
        cte = self.cte()
        if cte == "base64":
            return base64_size(self.buf, self.start, self.end)
        if cte == "quoted-printable" or cte in UU_ENCODINGS:
            return len(self.payload())
        return self.end - self.start

    def text(self, max_chars: int) -> str:
        """The body as text in its declared charset, newlines normalized, about max_chars long."""
        data = self.payload(max_chars * ENCODED_BYTES_PER_CHAR + 1024)
        text = decode_bytes(data, self.params.get("charset"))
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text

    def walk(self) -> Iterator[Part]:
        """This part and its descendants in depth-first order (the order of their indexes)."""
        yield self
        for child in self.children:
            yield from child.walk()


def base64_size(buf: bytes, start: int, end: int) -> int:
    """Decoded length of a base64 body from its length, line count and padding.

    Exact when lines end alike (all LF or all CRLF) and hold no spaces, as encoders write.
    """
    lines = buf.count(b"\n", start, end)
    first = buf.find(b"\n", start, end)
    crlf = first > start and buf[first - 1] == 0x0D
    chars = end - start - lines * (2 if crlf else 1)
    last = end
    while last > start and buf[last - 1] in b" \t\r\n":
        last -= 1
        chars -= buf[last] in b" \t"  # trailing blanks, not data
    pad = 0
    while pad < 2 and last > start and buf[last - 1] == 0x3D:
        pad, last = pad + 1, last - 1
    return max(0, chars * 3 // 4 - pad)


def uudecode(data: bytes) -> bytes:
    """Decode a uuencoded body between its `begin` and `end` lines; junk lines are skipped."""
    lines = data.splitlines()
    begin = next((i for i, line in enumerate(lines) if line.startswith(b"begin ")), None)
    if begin is None:
        return data
    out = bytearray()
    for line in lines[begin + 1 :]:
        if line.strip() == b"end":
            break
        if not line:
            continue  # binascii would decode an empty line as 32 zero bytes
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Some encoders pad lines; cut to the length the count character announces.
            count = ((line[0] - 32) & 63) * 4 + 5
            try:
                out += binascii.a2b_uu(line[: count // 3])
            except binascii.Error:
                continue
    return bytes(out)


def find_parts(
    buf: bytes, start: int, end: int, boundary: bytes, max_parts: int
) -> tuple[list[tuple[int, int]], bool]:
    """Spans of the body parts between boundary delimiters, and whether it was closed."""
    delimiter = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start = -1
    pos = start
    while len(spans) <= max_parts:
        found = buf.find(delimiter, pos, end)
        if found < 0:
            break
        after = found + len(delimiter)
        pos = after
        # RFC 2046 section 5.1.1: a delimiter starts a line; its line break belongs to it, and
        # it may be followed by "--" (the close delimiter) or by transport padding.
        if found != start and buf[found - 1] != 0x0A:
            continue
        closing = buf.startswith(b"--", after)
        if not closing and after < end and buf[after] not in b"\r\n \t":
            continue
        if 0 <= part_start < found:  # consecutive delimiters enclose nothing, not a part
            spans.append((part_start, line_break_before(buf, part_start, found)))
        if closing:
            return spans, True
        newline = buf.find(b"\n", after, end)
        part_start = end if newline < 0 else newline + 1
    if len(spans) > max_parts:
        return spans, True  # the caller reports the part limit, not a missing delimiter
    if part_start >= 0:
        spans.append((part_start, end))
    return spans, False


def line_break_before(buf: bytes, start: int, pos: int) -> int:
    """Where a part ends given the delimiter at pos: before its CRLF or LF."""
    if pos > start and buf[pos - 1] == 0x0A:
        pos -= 1
        if pos > start and buf[pos - 1] == 0x0D:
            pos -= 1
    return pos


class TreeBuilder:
    """Builds the Part tree of a message within the given limits, noting what went wrong."""

    def __init__(self, max_header_bytes: int, max_parts: int, max_depth: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_parts = max_parts
        self.max_depth = max_depth
        self.count = 0
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        """Record a problem once."""
        if message not in self.errors:
            self.errors.append(message)

    def build(self, buf: bytes) -> Part:
        """The root entity of a whole message."""
        return self.entity(buf, 0, len(buf), 0, "text/plain")

    def entity(self, buf: bytes, start: int, end: int, depth: int, default: str) -> Part:
        """Parse the entity in buf[start:end] and, within the limits, its children."""
        headers = parse_header_block(buf, start, end, self.max_header_bytes)
        if headers.truncated:
            self.error(f"header block over {self.max_header_bytes} bytes")
        ctype, params = parse_params(headers.get("content-type"))
        if not MEDIA_TYPE.fullmatch(ctype):
            ctype = default  # RFC 2045 section 5.2: missing or invalid means the default
        part = Part(self.count, depth, buf, headers, ctype, params, headers.body_start, end)
        self.count += 1
        if part.is_multipart:
            self.split(part)
        elif ctype in MESSAGE_TYPES:
            self.nest(part)
        return part

    def split(self, part: Part) -> None:
        """Parse the body parts of a multipart entity (RFC 2046 section 5.1)."""
        boundary = part.params.get("boundary", "").encode("utf-8", "replace")
        if not boundary:
            self.error(f"{part.ctype} without boundary")
            return
        if part.depth >= self.max_depth:
            self.error(f"nesting deeper than {self.max_depth}")
            return
        spans, closed = find_parts(part.buf, part.start, part.end, boundary, self.max_parts)
        if not spans:
            self.error(f"{part.ctype} boundary not found")
        elif not closed:
            self.error(f"{part.ctype} close delimiter missing")
        # RFC 2046 section 5.1.5: the parts of a digest are messages unless they say otherwise.
        default = "message/rfc822" if part.ctype == "multipart/digest" else "text/plain"
        for start, end in spans:
            if self.count >= self.max_parts:
                self.error(f"more than {self.max_parts} parts")
                return
            part.children.append(self.entity(part.buf, start, end, part.depth + 1, default))

    def nest(self, part: Part) -> None:
        """Parse the message inside a message/rfc822 entity as its only child."""
        if part.depth >= self.max_depth:
            self.error(f"nesting deeper than {self.max_depth}")
            return
        if self.count >= self.max_parts:
            self.error(f"more than {self.max_parts} parts")
            return
        buf, start, end = part.buf, part.start, part.end
        if part.cte() in ("base64", "quoted-printable") or part.cte() in UU_ENCODINGS:
            buf = part.payload()  # RFC 2046 section 5.2.1 forbids this, but mailers do it
            start, end = 0, len(buf)
        if start < end:
            part.children.append(self.entity(buf, start, end, part.depth + 1, "text/plain"))
