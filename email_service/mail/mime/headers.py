"""Header fields: the header block, RFC 2047 words, RFC 2045/2231 parameters, ids and dates.

RFC 2047 words are decoded here rather than with ``email.header.decode_header``, which raises
on a bad base64 word and re-encodes raw UTF-8 text next to encoded words with
``raw-unicode-escape``; every decoder below returns text for any input.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
from dataclasses import dataclass, field
from email.utils import getaddresses, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from email_service.mail.mime.charsets import decode_bytes, guess_decode

# RFC 5322 section 2.2: a field name is printable US-ASCII except ":", then the colon; the
# body runs on over folded lines (section 2.2.3: a line break followed by white space).
HEADER_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)(?:\n|\Z)")
# Line breaks inside a folded field value, removed to unfold it.
FOLD = re.compile(rb"\r?\n")
# RFC 5322 section 2.1: the first empty line ends the header (LF or CRLF line ends).
BLANK_LINE = re.compile(rb"\n\r?\n")
# RFC 2047 section 2 encoded-word; the text is matched loosely (mailers put "?" and spaces in
# it) but bounded (the RFC says 75 characters in all), so a run of "=?" costs linear time.
ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,64})(?:\*[^?\s]{0,64})?\?([bBqQ])\?(.{0,1000}?)\?=")
# RFC 2045 section 5.1 parameter: `; name=token` or `; name="quoted"` (broken quotes tolerated).
PARAM = re.compile(r';\s*([^\s=;"]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))', re.S)
# RFC 2231 section 3/4: `name*N*` sections, the optional trailing "*" meaning percent-encoded.
PARAM_NAME = re.compile(r"([^*]+)(?:\*(\d{1,3}))?(\*)?")
# The standard library's address parser is pure Python and recurses into comments "(" and
# groups ":" (RFC 5322 section 3.4): beyond these counts only the bare addresses are picked
# out (linear time, no recursion).
MAX_SLOW_ADDRESS_CHARS = 16 * 1024
MAX_ADDRESS_NESTING = 20
ADDRESS_DELIMITERS = re.compile(r'[\s<>,;:"()\[\]\\]+')
# Adjacent encoded-words: shielded as one token so a "," inside them cannot split an address.
ENCODED_RUN = re.compile(
    r"=\?[^?\s]{1,64}\?[bBqQ]\?.{0,1000}?\?=(?:\s+=\?[^?\s]{1,64}\?[bBqQ]\?.{0,1000}?\?=)*"
)
SHIELDED = re.compile("\x01(\\d+)\x01")
CONTROL = re.compile("[\x00-\x1f\x7f]")
MSG_ID = re.compile(r"<([^<>]*)>")
WHITESPACE = re.compile(r"\s+")
# JWZ threading needs the root and the nearest ancestors; a longer chain is a DoS, not history.
MAX_REFERENCES = 100
# Content-Type/-Disposition values are a few hundred characters (a 255-byte file name
# percent-encoded is under 800); the parameter pattern may rescan, so longer input is cut.
MAX_PARAMS_CHARS = 4096
# A parameter split into more RFC 2231 sections than this is an attack, not a filename.
MAX_PARAM_SECTIONS = 64


@dataclass(slots=True)
class HeaderBlock:
    """The fields of one entity's header, values kept as raw unfolded bytes until asked for."""

    fields: dict[str, list[bytes]] = field(default_factory=dict)
    body_start: int = 0
    truncated: bool = False

    def get(self, name: str) -> str | None:
        """The first value of a field, decoded to text (not RFC 2047-decoded), or None."""
        values = self.fields.get(name)
        return unfold(values[0]) if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value of a field, decoded to text."""
        return [unfold(value) for value in self.fields.get(name, ())]


def unfold(value: bytes) -> str:
    """A field value unfolded (RFC 5322 section 2.2.3), decoded and stripped."""
    if b"\n" in value:
        value = FOLD.sub(b"", value)
    return guess_decode(value).strip()


def header_end(buf: bytes, start: int, end: int) -> tuple[int, int]:
    """Offsets where the header block ends and where the body starts (RFC 5322 section 2.1)."""
    if buf.startswith(b"\n", start):
        return start, start + 1
    if buf.startswith(b"\r\n", start):
        return start, start + 2
    blank = BLANK_LINE.search(buf, start, end)
    return (blank.start() + 1, blank.end()) if blank else (end, end)


def parse_header_block(buf: bytes, start: int, end: int, max_bytes: int) -> HeaderBlock:
    """Split the header fields of the entity at start; values stay folded until read."""
    block_end, body_start = header_end(buf, start, end)
    block = HeaderBlock(body_start=body_start)
    if block_end - start > max_bytes:
        block.truncated = True
        block_end = start + max_bytes
    pos = start
    if start == 0 and buf.startswith(b"From "):
        pos = buf.find(b"\n", 0, block_end) + 1 or block_end  # an mbox separator line
    while pos < block_end:
        match = HEADER_FIELD.match(buf, pos, block_end)
        if match is not None:
            name = match.group(1).decode("ascii").lower()
            block.fields.setdefault(name, []).append(match.group(2))
            pos = match.end()
            continue
        line_end = buf.find(b"\n", pos, block_end) + 1 or block_end
        if buf[pos:line_end].strip() and buf[pos] not in b" \t" and not block.truncated:
            block.body_start = pos  # a body line without the blank line before it
            break
        pos = line_end
    return block


def normalize_ws(text: str) -> str:
    """Collapse runs of whitespace to one space and strip."""
    return WHITESPACE.sub(" ", text).strip()


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words; adjacent words of one charset are joined (section 6.2)."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending, charset = bytearray(), ""
    pos, after_word = 0, False
    for match in ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        word_charset = match.group(1).lower()
        if gap and not (after_word and gap.isspace()):
            out.append(decode_bytes(bytes(pending), charset) + gap)
            pending = bytearray()
        elif pending and word_charset != charset:
            out.append(decode_bytes(bytes(pending), charset))
            pending = bytearray()
        pending += _word_bytes(match.group(2), match.group(3))
        charset, pos, after_word = word_charset, match.end(), True
    out.append(decode_bytes(bytes(pending), charset) + value[pos:])
    return "".join(out)


def _word_bytes(encoding: str, text: str) -> bytes:
    """The octets of one encoded-word's text ("B" is base64, "Q" is RFC 2047 section 4.2)."""
    data = text.encode("utf-8", "replace")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    return lenient_b64decode(data)


def lenient_b64decode(data: bytes) -> bytes:
    """Base64-decode, ignoring junk and repairing or dropping an incomplete final quantum."""
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        pass
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
    try:
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    except binascii.Error:
        return b""


def parse_params(value: str | None) -> tuple[str, dict[str, str]]:
    """Split `type; a=b; c*=utf-8''%..` into the lower-cased value and decoded parameters."""
    if not value:
        return "", {}
    value = value[:MAX_PARAMS_CHARS]
    head = value.split(";", 1)[0].strip().lower()
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for match in PARAM.finditer(value):
        quoted, bare = match.group(2), match.group(3)
        text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare.strip()
        name = PARAM_NAME.fullmatch(match.group(1).lower())
        if name is None:
            continue
        base, number, star = name.group(1), name.group(2), bool(name.group(3))
        sections.setdefault(base, []).append((int(number or 0), star, text))
    params: dict[str, str] = {}
    for base, parts in sections.items():
        params[base] = _join_sections(sorted(parts)[:MAX_PARAM_SECTIONS])
    return head, params


def _join_sections(parts: list[tuple[int, bool, str]]) -> str:
    """Reassemble RFC 2231 continuations; an extended first section names the charset."""
    if len(parts) == 1 and not parts[0][1]:
        return decode_words(parts[0][2])
    charset: str | None = None
    data = bytearray()
    for position, (_number, star, section) in enumerate(parts):
        text = section
        if star and position == 0 and text.count("'") >= 2:
            charset, _lang, text = text.split("'", 2)
        data += unquote_to_bytes(text) if star else text.encode("utf-8")
    return decode_bytes(bytes(data), charset or "utf-8")


def parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """(name, address) pairs of address fields, names RFC 2047-decoded; garbage skipped."""
    out: list[tuple[str, str]] = []
    for value in values:
        pairs = parse_addresses_fast(value)
        for name, written in parse_addresses_slow(value) if pairs is None else pairs:
            address = WHITESPACE.sub("", CONTROL.sub("", written))
            if address:
                out.append((normalize_ws(CONTROL.sub(" ", decode_words(name))), address))
    return out


def parse_addresses_slow(value: str) -> list[tuple[str, str]]:
    """The RFC 5322 section 3.4 parser of the standard library, encoded-words shielded first."""
    words: list[str] = []

    def shield(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"\x01{len(words) - 1}\x01"

    def unshield(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return words[index] if index < len(words) else ""

    nesting = value.count("(") + value.count(":")
    if len(value) > MAX_SLOW_ADDRESS_CHARS or nesting > MAX_ADDRESS_NESTING:
        tokens = ADDRESS_DELIMITERS.split(value)
        return [("", token) for token in tokens if 0 < token.find("@") < len(token) - 1]
    pairs = getaddresses([ENCODED_RUN.sub(shield, value)])
    return [(SHIELDED.sub(unshield, name), address) for name, address in pairs]


def parse_addresses_fast(value: str) -> list[tuple[str, str]] | None:
    """The common `"Name" <a@b>, c@d` lists without the full RFC 5322 parser; None if unusual."""
    out: list[tuple[str, str]] = []
    pos, length = 0, len(value)
    while pos < length:
        match = FAST_ADDRESS.match(value, pos)
        if match is None or match.end() == pos:
            return None
        name = match.group("quoted") or match.group("phrase") or ""
        out.append((name, match.group("angle") or match.group("bare")))
        pos = match.end()
    return out


# Possessive quantifiers (Python 3.11) and classes that exclude what follows them: no
# backtracking, so a long run of blanks or junk costs linear time.
FAST_ADDRESS = re.compile(
    r'\s*+(?:(?:"(?P<quoted>[^"\\]*+)"\s*+|(?P<phrase>[^",<>()@:;\\\[\]]*+))'
    r'<(?P<angle>[^<>\s"(),:;@\\]++@[^<>\s"(),:;@\\]++)>'
    r'|(?P<bare>[^<>\s"(),:;@\\]++@[^<>\s"(),:;@\\]++))\s*+(?:,\s*+|$)'
)


def parse_msgid(value: str | None) -> str | None:
    """The first msg-id of a field in `<...>` form (RFC 5322 section 3.6.4), spaces removed."""
    ids = parse_msgid_list(value)
    return ids[0] if ids else None


def parse_msgid_list(value: str | None) -> list[str]:
    """Every msg-id of References/In-Reply-To in order, deduplicated, root and tail kept."""
    if not value:
        return []
    found = MSG_ID.findall(value)
    tokens = found if found else re.split(r"[\s,]+", value)
    seen: dict[str, None] = {}
    for token in tokens:
        if msgid := WHITESPACE.sub("", token):
            seen.setdefault(f"<{msgid}>", None)
    ids = list(seen)
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1) :]
    return ids


def parse_date(value: str | None) -> dt.datetime | None:
    """An aware datetime from an RFC 5322 date; "-0000" means UTC; invalid gives None."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
