"""Keyset cursors of search pages: where the last page ended, as opaque text.

A cursor names the order it belongs to and its phase: ``date`` (newest first, then id) or
``rank`` (the relevance window: rank, then date, then id; ``edge`` is the oldest message
of the window, or None when the window holds every match). Conditions start with a date
range (``<=``/``>=``) that the date indexes answer; an OR only settles ties.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, and_, or_

from email_service.errors import ValidationError
from email_service.store.keyset import older_than
from email_service.store.models import Message

Phase = Literal["date", "rank"]
# A message's place in date order: (received_date, id).
Key = tuple[datetime, uuid.UUID]


@dataclass(frozen=True)
class Cursor:
    """After which message the next page starts, in which order and phase."""

    order: str
    phase: Phase
    key: Key
    rank: float = 0.0
    edge: Key | None = None

    def encode(self) -> str:
        """Opaque URL-safe text."""
        data: dict[str, Any] = {"o": self.order, "p": self.phase, "k": _key_out(self.key)}
        if self.phase == "rank":
            data["r"] = self.rank
            data["e"] = _key_out(self.edge) if self.edge else None
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str, order: str) -> Cursor:
    """A cursor given back by a client; ValidationError on ``cursor`` if it is not ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode()))
        if data["o"] != order or data["p"] not in {"date", "rank"}:
            raise ValueError("cursor of another order")
        if data["p"] == "date":
            return Cursor(order, "date", _key_in(data["k"]))
        edge = _key_in(data["e"]) if data["e"] is not None else None
        return Cursor(order, "rank", _key_in(data["k"]), float(data["r"]), edge)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("invalid cursor", field="cursor") from None


def _key_out(key: Key) -> list[str]:
    return [key[0].isoformat(), key[1].hex]


def _key_in(value: Any) -> Key:
    at, key = value
    moment = datetime.fromisoformat(at)
    if moment.tzinfo is None:
        raise ValueError("naive timestamp")
    return moment, uuid.UUID(key)


def key_of(message: Message | Row[Any]) -> Key:
    """A message's (or a row with its ``received_date`` and ``id``) place in date order."""
    return message.received_date, message.id


def older(key: Key) -> ColumnElement[bool]:
    """Messages after ``key`` in date order (older, or as old with a smaller id)."""
    at, ident = key
    return older_than(Message.received_date, Message.id, at, ident)


def not_older(key: Key) -> ColumnElement[bool]:
    """``key`` itself and the messages before it in date order."""
    at, ident = key
    return and_(Message.received_date >= at, or_(Message.received_date > at, Message.id >= ident))
