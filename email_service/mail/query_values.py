"""Operator values of the search syntax: dates, ages, sizes, flags, folders, Message-IDs.

Each operator name maps to a builder ``(value, position) -> Node``; a bad value raises
``QuerySyntaxError`` at ``position``, the index of the value's first character.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from email_service.mail.query_ast import (
    IS_VALUES,
    TEXT_FIELDS,
    DateCmp,
    Flag,
    Folder,
    HasAttachment,
    Label,
    MessageId,
    Node,
    QuerySyntaxError,
    SizeCmp,
    Term,
    words,
)
from email_service.mail.threadkeys import clean_message_id

# Calendar dates: 2024-01-31 or 2024/1/31 (Gmail's form), one separator throughout.
DATE = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})")
# ISO 8601 datetimes (what to_text writes): a date, "T", a time, optional offset or Z.
ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T[0-9:.]+(Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE)
# Ages: a count and a unit, hours to years. Six digits reach past year 1 from any now.
AGE = re.compile(r"(\d{1,6})([hdwmy])", re.IGNORECASE)
# Sizes: a decimal number, an optional binary unit and an optional "B".
SIZE = re.compile(r"(\d{1,16}(?:\.\d{1,6})?)([kmg]?)b?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Sizes beyond this cannot be a message; the cap also keeps every backend's integer exact.
MAX_SIZE = 2**53

Builder = Callable[[str, int], Node]


def builder(name: str, now: datetime) -> Builder:
    """The value builder of operator ``name`` (lower case), resolving ages against ``now``."""
    if name in TEXT_FIELDS:
        return lambda value, at: _term(name, value, at)
    if name in {"before", "after"}:
        return lambda value, at: DateCmp(_date_op(name), _instant(value, at, now))
    if name in {"older_than", "newer_than"}:
        return lambda value, at: DateCmp(_date_op(name), _age(value, at, now))
    if name in {"larger", "smaller"}:
        return lambda value, at: SizeCmp(">" if name == "larger" else "<", _size(value, at))
    simple: dict[str, Builder] = {
        "is": _flag,
        "has": _has,
        "in": lambda value, at: Folder(_name(value, at, "a folder name")),
        "label": lambda value, at: Label(_name(value, at, "a label")),
        "message-id": _message_id,
        "rfc822msgid": _message_id,
    }
    return simple[name]


def _fail(message: str, position: int) -> QuerySyntaxError:
    return QuerySyntaxError(message, position)


def _term(field: str, value: str, position: int) -> Term:
    text = " ".join(value.split())
    if not words(text):
        raise _fail(f"expected letters or digits in the {field}: value", position)
    return Term(text, field)


def _date_op(name: str) -> Literal["<", ">="]:
    return "<" if name in {"before", "older_than"} else ">="


def _instant(value: str, position: int, now: datetime) -> datetime:
    """A calendar date (midnight in now's zone) or an ISO datetime, as aware UTC."""
    try:
        if match := DATE.fullmatch(value):
            year, _, month, day = match.groups()
            day = date(int(year), int(month), int(day))
            return datetime.combine(day, time(), now.tzinfo).astimezone(UTC)
        if ISO_DATETIME.fullmatch(value):
            parsed = datetime.fromisoformat(value.upper())
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=now.tzinfo)).astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise _fail("expected a date YYYY-MM-DD or YYYY/MM/DD", position)


def _age(value: str, position: int, now: datetime) -> datetime:
    """``now`` minus an age: 12h, 7d, 2w elapsed; 3m, 1y calendar months in now's zone."""
    match = AGE.fullmatch(value)
    if match is None:
        raise _fail("expected an age: a number and h, d, w, m or y (e.g. 7d)", position)
    count, unit = int(match.group(1)), match.group(2).lower()
    try:
        if unit in {"m", "y"}:
            return _months_back(now, count * (12 if unit == "y" else 1)).astimezone(UTC)
        hours = {"h": 1, "d": 24, "w": 24 * 7}[unit] * count
        return now.astimezone(UTC) - timedelta(hours=hours)
    except (ValueError, OverflowError):
        raise _fail("age reaches before year 1", position) from None


def _months_back(now: datetime, months: int) -> datetime:
    """Calendar months back, the day clamped to the target month's length."""
    index = now.year * 12 + now.month - 1 - months
    year, month = divmod(index, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def _size(value: str, position: int) -> int:
    """Octets from 10000, 500K, 1.5M or 2GB."""
    match = SIZE.fullmatch(value)
    if match is None:
        raise _fail("expected a size: a number with optional K, M or G (e.g. 1M)", position)
    size = int(Decimal(match.group(1)) * SIZE_UNITS[match.group(2).lower()])
    if size > MAX_SIZE:
        raise _fail(f"size too large: expected at most {MAX_SIZE} octets", position)
    return size


def _flag(value: str, position: int) -> Flag:
    meaning = IS_VALUES.get(value.casefold())
    if meaning is None:
        raise _fail(f"expected is: to be one of {', '.join(IS_VALUES)}", position)
    return Flag(*meaning)


def _has(value: str, position: int) -> HasAttachment:
    if value.casefold() != "attachment":
        raise _fail("expected has:attachment", position)
    return HasAttachment()


def _name(value: str, position: int, what: str) -> str:
    if not value.strip():
        raise _fail(f"expected {what}", position)
    return value


def _message_id(value: str, position: int) -> MessageId:
    cleaned = clean_message_id(value)
    if cleaned is None:
        raise _fail("expected a Message-ID such as <id@host>", position)
    return MessageId(cleaned)
