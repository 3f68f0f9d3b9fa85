"""Integration tests run with the change-log guard on (tests/support/change_guard.py): a
transaction of the application that commits a change to a message, folder, draft, outbox
item, account or sync state without its change-log row fails the test that made it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import change_guard


@pytest.fixture(autouse=True)
def change_log_guard() -> Iterator[change_guard.Guard]:
    """Every committed change of the test is announced in the change log."""
    with change_guard.watching() as guard:
        yield guard
        missing = guard.take()
    if missing:
        pytest.fail("changes committed without a change-log row:\n" + "\n".join(missing))
