"""Values in IMAP commands and responses: strings, mailbox names, UID sets, flags, dates.

Everything that puts caller data into a command line goes through here, so no value can
end a command early: CR, LF and NUL are refused (they cannot occur in an IMAP string,
RFC 9051 §4.3), 8-bit text goes into a literal, and everything else is quoted.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from imapclient import imap_utf7

from email_service.errors import HeaderInjectionError, ValidationError
from email_service.mail.imap.parse import ImapProtocolError

# Characters that would end or corrupt a command line wherever they appear (RFC 9051 §4.3).
FORBIDDEN = re.compile(r"[\r\n\x00]")
FORBIDDEN_BYTES = re.compile(rb"[\r\n\x00]")
# A flag or keyword is an atom (RFC 9051 §9 flag-keyword), system flags start with '\'.
FLAG = re.compile(r"\\?[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+\Z")
# Criteria and UID sets built by our own code: printable ASCII only.
SAFE_COMMAND_TEXT = re.compile(r"[\x20-\x7e]*\Z")
UID_SET = re.compile(r"(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*\Z")
# RFC 7162 §4: clients should keep command lines to about 8192 octets; UID sets are the
# only long part of ours, so they are cut well below that.
MAX_SET_CHARS = 7000
# UIDs are nz-number, a 32-bit unsigned integer (RFC 9051 §9 "uniqueid").
MAX_UID = 2**32 - 1
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_TIME = re.compile(
    r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z"
)
_MONTH_NUMBER = {name.lower(): number for number, name in enumerate(MONTHS, start=1)}


@dataclass(frozen=True, slots=True)
class Literal:
    """A literal argument; ``binary`` makes it a literal8 ``~{n}`` (RFC 3516 §4.3)."""

    data: bytes
    binary: bool = False


Arg = bytes | Literal


def check_text(value: str, field: str = "value") -> str:
    """Return ``value`` if it holds no CR, LF or NUL, else raise HeaderInjectionError."""
    if FORBIDDEN.search(value):
        raise HeaderInjectionError(f"{field} contains CR, LF or NUL", field=field)
    return value


def astring(value: str | bytes, field: str = "value") -> Arg:
    """A quoted string, or a literal for 8-bit data (RFC 9051 §4.3)."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    if FORBIDDEN_BYTES.search(raw):
        raise HeaderInjectionError(f"{field} contains CR, LF or NUL", field=field)
    if not raw.isascii():
        return Literal(raw)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def search_string(value: str) -> str:
    """``value`` as a quoted string for SEARCH criteria (``HEADER Message-ID "<a@b>"``).

    ASCII only: 8-bit text would need a literal and CHARSET (RFC 9051 §6.4.4).
    """
    check_text(value, "search")
    if not value.isascii():
        raise ValidationError("search strings must be ASCII", field="search")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_arg(raw_name: str) -> Arg:
    """A mailbox name as the server spelled it (modified UTF-7) for a command."""
    if raw_name.upper() == "INBOX":
        return b"INBOX"
    return astring(raw_name, "mailbox")


def encode_folder_name(name: str) -> str:
    """Modified UTF-7 (RFC 3501 §5.1.3) form of a folder name."""
    check_text(name, "mailbox")
    encoded: bytes = imap_utf7.encode(name)
    return encoded.decode("ascii")


def decode_folder_name(raw: str) -> str:
    """Decoded folder name; input that is not valid modified UTF-7 is returned as is."""
    if "&" not in raw:
        return raw
    try:
        decoded: str = imap_utf7.decode(raw.encode("ascii"))
        # Only the canonical encoding round-trips; anything else (e.g. "&AGE-" for "a",
        # which RFC 3501 §5.1.3 forbids, or UTF-16 with an unpaired surrogate, which
        # cannot be encoded again) is not modified UTF-7 and stays raw.
        canonical = imap_utf7.encode(decoded) == raw.encode("ascii")
    except (UnicodeError, ValueError):
        return raw
    return decoded if canonical else raw


def check_flags(flags: Iterable[str]) -> list[str]:
    """Validated flags/keywords, sorted; raise ValidationError on anything else."""
    out = sorted(set(flags))
    for flag in out:
        if not FLAG.match(flag) or flag == "\\Recent":
            raise ValidationError(f"not a settable IMAP flag: {flag!r}", field="flags")
    return out


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Label)`` for a command."""
    return b"(" + " ".join(check_flags(flags)).encode("ascii") + b")"


def check_uid_set(uid_set: str) -> bytes:
    """A caller-given UID set such as ``1:*`` or ``3,5:9``, validated."""
    if not UID_SET.match(uid_set):
        raise ValidationError(f"not a UID set: {uid_set!r}", field="uid_set")
    return uid_set.encode("ascii")


def check_criteria(criteria: str) -> bytes:
    """SEARCH criteria built by our code: one printable ASCII line."""
    if not SAFE_COMMAND_TEXT.match(criteria):
        raise HeaderInjectionError("search criteria must be printable ASCII", field="criteria")
    return criteria.encode("ascii")


def _runs(uids: Iterable[int]) -> Iterator[tuple[int, int]]:
    ordered = sorted(set(uids))
    if ordered and (ordered[0] < 1 or ordered[-1] > MAX_UID):
        raise ValidationError("UIDs are between 1 and 2**32-1", field="uids")
    start = prev = -1
    for uid in ordered:
        if uid != prev + 1:
            if start > 0:
                yield start, prev
            start = uid
        prev = uid
    if start > 0:
        yield start, prev


def _run_text(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}:{end}"


def compact_uid_set(uids: Iterable[int]) -> str:
    """``1:5,7,9:12`` for the given UIDs (sorted, duplicates dropped)."""
    return ",".join(_run_text(start, end) for start, end in _runs(uids))


def _split_runs(uids: Iterable[int], max_count: int) -> Iterator[tuple[int, int]]:
    """Runs of consecutive UIDs, none longer than ``max_count``."""
    for start, end in _runs(uids):
        for low in range(start, end + 1, max_count):
            yield low, min(end, low + max_count - 1)


def uid_set_chunks(uids: Iterable[int], max_count: int) -> Iterator[tuple[str, int]]:
    """Compact UID sets of at most ``max_count`` UIDs and MAX_SET_CHARS characters each."""
    parts: list[str] = []
    count = chars = 0
    for start, end in _split_runs(uids, max_count):
        size = end - start + 1
        text = _run_text(start, end)
        if parts and (count + size > max_count or chars + len(text) + 1 > MAX_SET_CHARS):
            yield ",".join(parts), count
            parts, count, chars = [], 0, 0
        parts.append(text)
        count += size
        chars += len(text) + 1
    if parts:
        yield ",".join(parts), count


def _set_ranges(text: str) -> Iterator[tuple[int, int]]:
    """(low, high) of each member of a UID set from a response (RFC 9051 §9 sequence-set)."""
    for item in text.split(","):
        low, sep, high = item.partition(":")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ImapProtocolError(f"not a UID set: {text[:80]!r}")
        first, last = int(low), int(high) if sep else int(low)
        yield min(first, last), max(first, last)


def parse_uid_set(text: str, upper: int | None = None) -> list[int]:
    """UIDs of a set from a response (``1:3,7``), in the order given; ``upper`` caps ranges."""
    out: list[int] = []
    for first, last in _set_ranges(text):
        out.extend(range(first, (last if upper is None else min(last, upper)) + 1))
    return out


def count_uid_set(text: str) -> int:
    """How many UIDs a set from a response holds, without listing them."""
    return sum(last - first + 1 for first, last in _set_ranges(text))


def format_internaldate(value: dt.datetime) -> bytes:
    """``"17-Jul-1996 02:44:25 -0700"`` (RFC 9051 §9 date-time); needs an aware datetime."""
    offset = value.utcoffset()
    if offset is None:
        raise ValidationError("internaldate must be timezone-aware", field="internaldate")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    month = MONTHS[value.month - 1]
    text = f"{value.day:02d}-{month}-{value.year:04d} {value:%H:%M:%S} {sign}{hours:02d}{mins:02d}"
    return b'"' + text.encode("ascii") + b'"'


def parse_internaldate(text: str) -> dt.datetime | None:
    """An aware datetime from an INTERNALDATE value, or None if it is malformed."""
    match = _DATE_TIME.match(text)
    if match is None:
        return None
    day, mon, year, hh, mm, ss, sign, zh, zm = match.groups()
    month = _MONTH_NUMBER.get(mon.lower())
    offset = (int(zh) * 60 + int(zm)) * (-1 if sign == "-" else 1)
    if month is None or abs(offset) >= 24 * 60:
        return None
    try:
        zone = dt.timezone(dt.timedelta(minutes=offset))
        return dt.datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=zone)
    except ValueError:
        return None
