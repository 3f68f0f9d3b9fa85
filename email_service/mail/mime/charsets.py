"""Bytes to text for mail: declared charsets, their common mislabels, and safe fallbacks."""

from __future__ import annotations

import codecs
import functools

# Labels mail clients write that Python names differently or that browsers (WHATWG Encoding
# Standard, section 4.2) map to a superset; decoding with the superset loses nothing.
CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "big5": "big5hkscs",
    "iso-8859-8-i": "iso8859-8",
    "windows-874": "cp874",
    "tis-620": "cp874",
    "x-mac-roman": "mac-roman",
    "macintosh": "mac-roman",
    "utf8": "utf-8",
}
# Labels that say nothing about the bytes: treated like a missing charset (guessed).
UNKNOWN_CHARSETS = frozenset(
    {"", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "unknown", "default", "x-user-defined"}
)
# Python codecs that are not mail charsets and would interpret escapes or refuse "replace".
REFUSED_CODECS = frozenset(
    {"unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode", "mbcs", "oem"}
)
# Codecs whose output can hold neither lone surrogates nor anything but what the bytes say.
PLAIN_CODECS = frozenset({"utf-8", "cp1252", "iso8859-1", "ascii"})


@functools.lru_cache(maxsize=256)
def codec_name(charset: str | None) -> str | None:
    """The Python codec for a declared charset, or None when unknown or not a text codec."""
    if charset is None:
        return None
    label = charset.strip().strip("\"'").lower()
    if label in UNKNOWN_CHARSETS:
        return None
    label = CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    name = info.name.replace("_", "-")
    if name in REFUSED_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    return name


def guess_decode(data: bytes) -> str:
    """Decode bytes of unknown charset: UTF-8 if valid, else Windows-1252, else Latin-1."""
    try:
        return clean_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    try:
        return clean_text(data.decode("cp1252"))
    except UnicodeDecodeError:
        return clean_text(data.decode("latin-1"))


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset (errors replaced); unknown charsets are guessed."""
    codec = codec_name(charset)
    if codec is None:
        return guess_decode(data)
    try:
        text = data.decode(codec, "replace")
    except (UnicodeError, LookupError, ValueError, TypeError):
        return guess_decode(data)
    if codec not in PLAIN_CODECS:
        text = _without_surrogates(text)
    return clean_text(text)


def clean_text(text: str) -> str:
    """Drop NUL characters, which PostgreSQL text columns refuse."""
    return text.replace("\x00", "") if "\x00" in text else text


def _without_surrogates(text: str) -> str:
    """Replace lone surrogates (UTF-7 and friends can produce them) so the text encodes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
