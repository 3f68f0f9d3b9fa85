"""Polling until something is true: the one loop the tests and test servers wait with."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
# Processes start and jobs finish in seconds; a loaded 2-core machine gets generous slack.
WAIT_S = 90.0
# Loopback answers in well under this; short enough not to slow the tests.
INTERVAL_S = 0.02


def wait_for(
    predicate: Callable[[], T | None],
    what: str,
    timeout: float = WAIT_S,
    *,
    interval: float = INTERVAL_S,
    error: Callable[[str], BaseException] = AssertionError,
) -> T:
    """Poll ``predicate`` until it returns something true and return that.

    After ``timeout`` seconds raise ``error(message)`` (an AssertionError unless told):
    a bound on a hang, not a speed check.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
