"""The service's APIFlask: Flask's per-request dispatch with less repeated work.

Flask asks ``ensure_sync(func)`` for every hook and view of every request (eight times
for a list route), and each call inspects the function for ``async def``. Functions are
registered once, so the answer is remembered: a plain function is returned as it is, as
Flask would, and a coroutine function still goes through Flask's wrapper each time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiflask import APIFlask

# Hooks and views are registered once; a bound on what is remembered all the same.
SYNC_REMEMBERED = 4096


class ServiceApp(APIFlask):
    """APIFlask that remembers which hooks and views are plain functions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain: dict[Callable[..., Any], bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` if it is a plain function (remembered), else Flask's wrapper."""
        try:
            plain = self._plain.get(func)
        except TypeError:  # an unhashable callable: asked every time
            return super().ensure_sync(func)
        if plain is None:
            plain = super().ensure_sync(func) is func
            if len(self._plain) < SYNC_REMEMBERED:
                self._plain[func] = plain
        return func if plain else super().ensure_sync(func)
