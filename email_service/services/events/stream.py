"""The event stream's source: a tenant's change log from a position on, woken by a poller.

One :class:`Notifier` per events process polls the change log for each tenant's newest
``seq`` (one indexed query per ``EVENTS_POLL_SECONDS``, however many streams are open)
and wakes the streams of tenants that moved. Rows of a tenant commit in ``seq`` order
(``store/change_log.py``), so a tenant's newest ``seq`` grows with every commit of that
tenant and a stream that reads after its last id misses nothing. Database calls run in
worker threads (``asyncio.to_thread``); the event loop only waits.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from email_service.services.events import feed
from email_service.services.events.names import event_name
from email_service.store import change_log
from email_service.store.db import Database
from email_service.store.models import utcnow

# A commit is noticed if its rows were written less than this long before the poll: far
# longer than any transaction stays between writing its rows and committing.
RECENT_WINDOW = timedelta(seconds=120)
# Rows read per database round trip while a stream catches up.
BATCH = 500


@dataclass(frozen=True)
class Event:
    """One server-sent event: ``id`` is the state after it (``Last-Event-ID`` resumes)."""

    id: str
    event: str
    data: str


class Notifier:
    """Wakes streams when their tenant's change log moves."""

    def __init__(self, db: Database, poll_seconds: float) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self._tops: dict[str, int] = {}
        self._moved: dict[str, asyncio.Event] = {}

    def watch(self, tenant_id: str) -> asyncio.Event:
        """An event set at the tenant's next move; take it *before* reading the log."""
        return self._moved.setdefault(tenant_id, asyncio.Event())

    @staticmethod
    async def wait(moved: asyncio.Event, timeout: float) -> None:
        """Return when ``moved`` is set, or after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(moved.wait(), timeout)
        except TimeoutError:
            return

    def _poll_once(self) -> dict[str, int]:
        with self.db.reading() as session:
            return change_log.recent_tops(session, utcnow() - RECENT_WINDOW)

    async def run(self) -> None:
        """Poll forever (cancel to stop)."""
        while True:
            tops = await asyncio.to_thread(self._poll_once)
            for tenant, top in tops.items():
                if top > self._tops.get(tenant, 0):
                    self._tops[tenant] = top
                    moved = self._moved.pop(tenant, None)
                    if moved is not None:
                        moved.set()  # every waiter wakes; the next wait gets a fresh event
            await asyncio.sleep(self.poll_seconds)


def start_position(db: Database, tenant_id: str, last_event_id: str | None) -> int:
    """Where a stream starts: after ``Last-Event-ID``, else now (raises if unanswerable)."""
    with db.reading() as session:
        if last_event_id is None:
            return feed.current_state(session, tenant_id)
        after = feed.decode_state(last_event_id, name="Last-Event-ID")
        feed.check_since(session, tenant_id, after)
        return after


def _events(db: Database, tenant_id: str, after: int, account_id: uuid.UUID | None) -> list[Event]:
    with db.reading() as session:
        rows = change_log.read(session, tenant_id, after, BATCH, account_id)
    return [
        Event(
            id=feed.encode_state(row.seq),
            event=event_name(row.type, row.op, row.detail),
            data=json.dumps(
                {
                    "type": row.type,
                    "op": row.op,
                    "id": row.entity_id,
                    "account_id": str(row.account_id) if row.account_id else None,
                    "detail": row.detail,
                    "at": row.created_at.isoformat(),
                }
            ),
        )
        for row in rows
    ]


async def events(
    db: Database,
    notifier: Notifier,
    tenant_id: str,
    after: int,
    account_id: uuid.UUID | None = None,
    idle_check_seconds: float = 30.0,
) -> AsyncIterator[Event]:
    """The tenant's events after ``after``, forever; re-reads at least every so often."""
    while True:
        moved = notifier.watch(tenant_id)
        batch = await asyncio.to_thread(_events, db, tenant_id, after, account_id)
        for item in batch:
            yield item
        if batch:
            after = feed.decode_state(batch[-1].id)
            if len(batch) == BATCH:
                continue
        await notifier.wait(moved, idle_check_seconds)
