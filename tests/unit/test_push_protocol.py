"""Push pieces that need no server: which responses mean a change, back-off, fair share,
and reads that overlap."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from email_service.mail.imap.idle import PushClient, _literal_size, changed_folder
from email_service.mail.imap.parse import parse_segments
from email_service.services.push.leases import fair_share
from email_service.services.push.watch import BACKOFF_MAX_S, backoff
from tests.support import aio


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"* 3 EXISTS", "INBOX"),
        (b"* 2 EXPUNGE", "INBOX"),
        (b"* VANISHED 4:5", "INBOX"),
        (b"* 1 FETCH (FLAGS (\\Seen) MODSEQ (12))", "INBOX"),
        (b'* STATUS "Sent Items" (MESSAGES 3 UIDNEXT 9)', "Sent Items"),
        (b"* STATUS Archive (HIGHESTMODSEQ 40)", "Archive"),
        (b"* OK Still here", None),
        (b"* 4 RECENT", None),
        (b'* LIST () "/" NewFolder', None),
        (b"W3 OK IDLE terminated", None),
    ],
)
def test_changed_folder(line: bytes, expected: str | None) -> None:
    assert changed_folder(parse_segments([line], []), "INBOX") == expected


def test_status_with_a_literal_mailbox_name() -> None:
    response = parse_segments([b"* STATUS ", b" (MESSAGES 1)"], ["Entw\u00fcrfe".encode()])
    assert changed_folder(response, "INBOX") == "Entw\u00fcrfe"


def test_literal_size() -> None:
    assert _literal_size(b"* STATUS {5}") == 5
    assert _literal_size(b"* STATUS ~{12}") == 12
    assert _literal_size(b"* OK text") is None
    assert _literal_size(b"* OK {x}") is None


def test_backoff_doubles_jittered_and_capped() -> None:
    for attempt in range(40):
        delay = backoff(attempt)
        ceiling = min(BACKOFF_MAX_S, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_fair_share() -> None:
    assert [fair_share(1000, n) for n in (1, 2, 3)] == [1000, 500, 334]
    assert fair_share(5, 0) == 5  # no live watcher counted yet: take them all


async def _overlapping_reads() -> tuple[Any, Any, Any]:
    reader = asyncio.StreamReader()
    client = PushClient(reader, writer=None, timeout=5)  # type: ignore[arg-type]

    async def twice() -> tuple[Any, Any]:  # takes a response, then starts the next read
        return await client.read(), await client.read()

    first = asyncio.ensure_future(twice())
    late = asyncio.ensure_future(client.read())  # e.g. an IDLE task cancelled too late
    await asyncio.sleep(0)
    reader.feed_data(b"* 3 EXISTS\r\n")
    shared = await late
    reader.feed_data(b"W1 OK LOGOUT completed\r\n")
    one, two = await first
    return one, two, shared


def test_a_reader_whose_response_was_taken_keeps_it_and_leaves_the_next_read() -> None:
    one, two, shared = aio.run(_overlapping_reads())
    assert shared is one and (one.kind, one.number) == ("EXISTS", 3)
    assert two.tag == "W1" and two.kind == "OK"
