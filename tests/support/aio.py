"""Run a coroutine to completion from a test, whatever loop the test process already has.

Playwright's sync API keeps an event loop running in the main thread of an xdist worker
once a browser test has run there, and ``asyncio.run`` refuses to start inside it; a
thread of its own gives the coroutine a loop of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` on a thread of its own; its result or its exception."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as pool:
        return pool.submit(asyncio.run, coroutine).result()
