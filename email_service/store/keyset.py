"""Keyset conditions for pages in descending (timestamp, id) order."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_


def older_than(column: Any, key_column: Any, at: datetime | Any, key: Any) -> ColumnElement[bool]:
    """Rows after (at, key) in ``column DESC, key_column DESC`` order (values or bind parameters).

    Written ``column <= at AND (column < at OR key < k)`` rather than the textbook
    ``column < at OR (column = at AND key < k)``: the same rows, but the first conjunct is an
    index range, so a deep page starts where the cursor points (bench/search times both).
    """
    return and_(column <= at, or_(column < at, key_column < key))
