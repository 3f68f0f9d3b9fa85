"""Keyset pagination: opaque cursors that stay stable when rows are added."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from email_service.errors import ValidationError
from email_service.store.keyset import older_than

__all__ = ["Page", "decode_cursor", "encode_cursor", "older_than"]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of items and the cursor of the next, if any."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(at: datetime, key: str) -> str:
    """An opaque cursor after (timestamp, key)."""
    raw = json.dumps([at.isoformat(), key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Undo encode_cursor; a tampered cursor is a ValidationError on `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, key = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(at)
        if not isinstance(key, str) or moment.tzinfo is None:
            raise ValueError("bad cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("invalid cursor", field="cursor") from None
    return moment, key
