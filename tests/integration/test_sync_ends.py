"""Ends of sync runs announced to the triggers that wait for them, over a real Redis and
in memory: heard from the moment a listener starts, only for its own account."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from email_service.services.sync import ends

# Long enough for a loaded machine to deliver a message; only bounds a failing test.
HEARD_S = 10.0
# How long a listener waits for an announcement that must not reach it.
SILENT_S = 0.3


@pytest.fixture(params=["redis", "memory"])
def sync_ends(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return ends.MemorySyncEnds()
    return ends.RedisSyncEnds(request.getfixturevalue("redis_url"))


def test_an_end_is_heard_by_the_accounts_listeners_only(sync_ends: Any) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    sync_ends.announce(mine)  # before anyone listens: not heard later
    with sync_ends.listen(mine) as first, sync_ends.listen(mine) as second:
        assert not first.wait(SILENT_S)
        sync_ends.announce(other)
        assert not first.wait(SILENT_S)
        sync_ends.announce(mine)
        assert first.wait(HEARD_S) and second.wait(HEARD_S)
        assert not first.wait(SILENT_S)  # once each


def test_an_end_from_another_thread_wakes_a_waiting_listener(sync_ends: Any) -> None:
    account = uuid.uuid4()
    with sync_ends.listen(account) as listener:
        announcer = threading.Timer(0.05, sync_ends.announce, args=(account,))
        announcer.start()
        try:
            assert listener.wait(HEARD_S)
        finally:
            announcer.join()


def test_without_redis_a_listener_waits_out_its_time_and_nothing_raises() -> None:
    gone = ends.RedisSyncEnds("redis://127.0.0.1:1/0")  # nothing listens on port 1
    account = uuid.uuid4()
    gone.announce(account)
    with gone.listen(account) as listener:
        assert not listener.wait(SILENT_S)
