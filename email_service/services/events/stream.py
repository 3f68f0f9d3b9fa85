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
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from email_service.services.events import feed
from email_service.services.events.names import event_name
from email_service.store import change_log
from email_service.store.change_log import ChangeRow
from email_service.store.db import Database
from email_service.store.models import utcnow
from email_service.store.scope import operator_scope, tenant_scope

# A commit is noticed if its rows were written less than this long before the poll: far
# longer than any transaction stays between writing its rows and committing.
RECENT_WINDOW = timedelta(seconds=120)
# Rows read per database round trip while a stream catches up.
BATCH = 500
# Newest rows kept in memory per tenant, shared by its streams (one read per commit).
RECENT_ROWS = 1000


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
        # Per tenant, the newest rows read once by the poller for all its streams, and the
        # position they follow: a stream at or after it reads from here, not the database.
        self._recent: dict[str, deque[ChangeRow]] = {}
        self._floor: dict[str, int] = {}

    def buffered(
        self, tenant_id: str, after: int, account_id: uuid.UUID | None
    ) -> list[ChangeRow] | None:
        """The tenant's rows after ``after`` from memory; None if memory does not reach back."""
        floor = self._floor.get(tenant_id)
        if floor is None or after < floor:
            return None
        rows = [r for r in self._recent[tenant_id] if r.seq > after]
        if account_id is not None:
            rows = [r for r in rows if r.account_id == account_id]
        return rows[:BATCH]

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

    def _poll_once(self) -> dict[str, list[ChangeRow] | int]:
        """Each moved tenant's new rows (or, first seen, just its top)."""
        found: dict[str, list[ChangeRow] | int] = {}
        with self.db.reading() as session:
            tops = change_log.recent_tops(session, utcnow() - RECENT_WINDOW)
            for tenant, top in tops.items():
                known = self._tops.get(tenant)
                if known is None:
                    found[tenant] = top
                elif top > known:  # rows of a tenant commit in seq order: these are all
                    found[tenant] = change_log.read(session, tenant, known, RECENT_ROWS, upto=top)
        return found

    def _remember(self, tenant: str, news: list[ChangeRow] | int) -> None:
        if isinstance(news, int):
            self._tops[tenant], self._floor[tenant] = news, news
            self._recent[tenant] = deque(maxlen=RECENT_ROWS)
            return
        if not news:
            return
        recent = self._recent[tenant]
        if len(news) >= RECENT_ROWS:  # more than memory keeps: streams read the database
            recent.clear()
            self._floor[tenant] = news[-1].seq
        else:
            if len(recent) + len(news) > RECENT_ROWS:
                self._floor[tenant] = recent[len(recent) + len(news) - RECENT_ROWS - 1].seq
            recent.extend(news)
        self._tops[tenant] = news[-1].seq

    async def run(self) -> None:
        """Poll forever (cancel to stop); the poll reads every tenant's top (operator scope)."""
        with operator_scope("events: poll the change log of every tenant"):
            await self._run()

    async def _run(self) -> None:
        while True:
            for tenant, news in (await asyncio.to_thread(self._poll_once)).items():
                self._remember(tenant, news)
                moved = self._moved.pop(tenant, None)
                if moved is not None:
                    moved.set()  # every waiter wakes; the next wait gets a fresh event
            await asyncio.sleep(self.poll_seconds)


def start_position(db: Database, tenant_id: str, last_event_id: str | None) -> int:
    """Where a stream starts: after ``Last-Event-ID``, else now (raises if unanswerable)."""
    with tenant_scope(tenant_id), db.reading() as session:
        if last_event_id is None:
            return feed.current_state(session, tenant_id)
        after = feed.decode_state(last_event_id, name="Last-Event-ID")
        feed.check_since(session, tenant_id, after)
        return after


def _read(
    db: Database, tenant_id: str, after: int, account_id: uuid.UUID | None
) -> list[ChangeRow]:
    with tenant_scope(tenant_id), db.reading() as session:
        return change_log.read(session, tenant_id, after, BATCH, account_id)


def _events(rows: list[ChangeRow]) -> list[Event]:
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
        rows = notifier.buffered(tenant_id, after, account_id)
        if rows is None:
            rows = await asyncio.to_thread(_read, db, tenant_id, after, account_id)
        batch = _events(rows)
        for item in batch:
            yield item
        if batch:
            after = feed.decode_state(batch[-1].id)
            if len(batch) == BATCH:
                continue
        await notifier.wait(moved, idle_check_seconds)
