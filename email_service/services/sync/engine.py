"""The IMAP sync engine: one account's server state into the local store.

Per folder, from what LIST-STATUS (RFC 5819) reports in one round trip::

                        ┌──────────── status unchanged (UIDVALIDITY, UIDNEXT, ─────► skip
                        │             HIGHESTMODSEQ, MESSAGES equal) : 0 round trips
    LIST … RETURN STATUS┤
                        ├── never synced ───────────────► INITIAL: UID SEARCH ALL, then
                        │                                  streamed UID FETCH of what is not
                        │                                  stored yet, committed in batches
                        ├── UIDVALIDITY changed ────────► REMAP: fetch again, rows whose raw
                        │                                  bytes (SHA-256) match are re-keyed,
                        │                                  keeping ids/threads; the rest go
                        └── changed ────────────────────► INCREMENTAL:
                               QRESYNC  SELECT (QRESYNC (uidvalidity modseq)): VANISHED +
                                        changed flags, then new UIDs >= old UIDNEXT
                               CONDSTORE FETCH 1:* FLAGS (CHANGEDSINCE modseq) + UID SEARCH
                               neither  FETCH 1:* FLAGS compared with the store

A pushed change of a folder with a checkpoint skips the LIST: EXAMINE (QRESYNC) of that
folder answers the same questions (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, EXISTS) and the
state machine goes on from there; a folder the server no longer has falls back to the LIST.

A folder's checkpoint (uidvalidity, uidnext, highestmodseq) is written only after the
folder is complete (in one transaction with its last batch of new mail), so a run killed
anywhere resumes: stored UIDs are skipped, inserts ignore duplicates (unique
folder/uidvalidity/uid), and the blob store is idempotent.
Errors: RemoteAuthError ends the run as ``auth_failed`` (no retry storm); other remote
errors end it as ``error`` and the task layer retries with back-off.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from email_service.errors import RemotePermanentError
from email_service.mail.imap.session import FetchedMessage, ImapSession
from email_service.mail.imap.session import Folder as ServerFolder
from email_service.mail.imap.types import SelectResult
from email_service.mail.mime.parse import Limits
from email_service.observability import metrics
from email_service.services.sync import folders as folders_repo
from email_service.services.sync import ingest
from email_service.services.sync import state as sync_state
from email_service.services.sync.increment import Increment
from email_service.services.sync.ingest_pool import ParseOptions, Preparer
from email_service.services.sync.writer import BatchWriter
from email_service.store.blobs import BlobStore
from email_service.store.db import Database

# Rows per commit: short transactions (readers never wait long), few round trips to the DB;
# the byte cap bounds memory: a batch being fetched, PARSE_AHEAD + 1 being parsed, and
# QUEUE_DEPTH being written (4 MiB: the same speed as 8 here, 20 MB less peak RSS).
BATCH_MESSAGES = 200
BATCH_BYTES = 4 * 1024 * 1024
# Batches parsing in the pool while the next one is fetched: keeps every process busy,
# and memory at a few batches.
PARSE_AHEAD = 1
# New mail is fetched newest first, and the newest messages of a folder are committed as
# one small batch before the rest, so a new mailbox shows its latest mail at once. A folder
# that has mail stored and at most a batch of new mail gets it in one transaction, with
# its checkpoint: a small incremental sync pays one commit, not two.
FIRST_BATCH = 50
ROLE_ORDER = ("inbox", "sent", "drafts", "archive", "flagged", "junk", "trash", "all")

Progress = Callable[[str, int, int, int], None]  # folder name, done, total, bytes


@dataclass
class _Parsing:
    """A batch handed to the preparer: its rows to come, and what progress it makes."""

    parts: list[Future[list[ingest.Incoming]]]
    name: str
    size: int
    done: int
    total: int


@dataclass
class SyncReport:
    """What one run did."""

    folders: int = 0
    new_messages: int = 0
    bytes: int = 0
    flag_updates: int = 0
    deleted: int = 0
    remapped: int = 0
    seconds: float = 0.0
    per_folder: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class SyncContext:
    """Everything a run needs besides the IMAP session."""

    db: Database
    blobs: BlobStore
    tenant_id: str
    account_id: uuid.UUID
    owner: str
    limits: Limits = field(default_factory=Limits)
    progress: Progress | None = None
    lock_ttl: timedelta = sync_state.LOCK_TTL
    parse_bodies: bool = True  # ENABLE_EMAIL_PARSING: false stores raw MIME + headers only
    parse_processes: int = 0  # SYNC_PARSE_PROCESSES: a pool for large runs; 0 parses inline
    only_folder: str | None = None  # a pushed change: this folder (raw name) alone
    # ... and its checkpoint, read as the run took its lock: then no LIST (see _pushed)
    known: folders_repo.Checkpoint | None = None


class SyncEngine:
    """Runs the state machine above over an open ImapSession."""

    def __init__(self, ctx: SyncContext, imap: ImapSession) -> None:
        self.ctx = ctx
        self.imap = imap
        self.report = SyncReport()
        self._last_beat = 0.0

    def run(self) -> SyncReport:
        """Sync every selectable folder; returns the report."""
        ctx = self.ctx
        options = ParseOptions(
            ctx.limits, ctx.parse_bodies, tsvector=ctx.db.dialect == "postgresql"
        )
        self.options = options
        self.preparer = Preparer(ctx.blobs, options, ctx.parse_processes)
        self._parsing: deque[_Parsing] = deque()
        self._held: _Parsing | None = None  # a folder's final batch, for its checkpoint
        self._increment: Increment | None = None  # a folder's new mail, for its checkpoint
        self.writer = BatchWriter()
        try:
            return self._run()
        finally:
            if self._increment is not None:  # stopped before its checkpoint: rolled back
                self._increment.abort()
            self.preparer.close()
            self.writer.close()

    def _run(self) -> SyncReport:
        started = time.monotonic()
        if self.ctx.known is not None and self._pushed(self.ctx.known):
            self.report.folders = 1
            self.report.seconds = time.monotonic() - started
            return self.report
        server = self.imap.list_folders(with_status=True)
        only = self.ctx.only_folder  # a pushed change syncs just its folder
        ordered = [
            f
            for f in sorted(server, key=_folder_order)
            if f.selectable and only in (None, f.raw_name)
        ]
        for remote in ordered:  # every folder counts towards the run's percent from the start
            self._note(remote.name, 0, remote.status.messages if remote.status else 0)
        with self.ctx.db.session() as session:  # and one read for every folder's checkpoint
            rows = folders_repo.reconcile(session, self.ctx.tenant_id, self.ctx.account_id, server)
            local = folders_repo.local_states(session, [rows[f.raw_name] for f in ordered])
        for remote in ordered:
            folder_id = rows[remote.raw_name]
            self._sync_folder(remote, folder_id, local[folder_id])
        self.report.folders = len(server)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _pushed(self, known: folders_repo.Checkpoint) -> bool:
        """A pushed change of a folder synced before: straight to it, without the LIST of
        every folder (a new, renamed or deleted folder is the periodic sync's, or the
        reconnect's whole-account sync). False when the folder cannot be selected: then
        the LIST decides."""
        ctx = self.ctx
        assert ctx.only_folder is not None
        remote = ServerFolder(
            ctx.only_folder, known.name, None, frozenset(), None, status=None, selectable=True
        )
        qresync = self._qresync(known.uidvalidity, known.highestmodseq)
        try:
            selected = self.imap.select_folder(ctx.only_folder, readonly=True, qresync=qresync)
        except RemotePermanentError:  # gone or renamed since
            return False
        self._note(known.name, 0, known.messages)
        folder_id = known.folder_id
        if selected.uidvalidity != known.uidvalidity:
            self._remap(remote, folder_id, known.uidvalidity)
        elif (
            (selected.uidnext, selected.highestmodseq) == (known.uidnext, known.highestmodseq)
            and selected.exists == known.messages
            and not selected.vanished
            and not selected.changed
        ):
            self._note(known.name, known.messages, known.messages)  # nothing to do
        else:
            point = (known.uidvalidity, known.uidnext, known.highestmodseq)
            self._incremental(remote, folder_id, point, known.messages, selected)
        return True

    def _qresync(self, uidvalidity: int, modseq: int | None) -> tuple[int, int] | None:
        """What SELECT (QRESYNC ...) sends for a checkpoint, when the server offers it and
        the checkpoint has a mod-sequence; else None."""
        return (uidvalidity, modseq) if "QRESYNC" in self.imap.capabilities and modseq else None

    # --- per folder ---------------------------------------------------------------------
    def _sync_folder(
        self,
        remote: ServerFolder,
        folder_id: uuid.UUID,
        local: tuple[int | None, int | None, int | None, int],
    ) -> None:
        """``local``: the folder's checkpoint and stored count as the run began."""
        uidvalidity, uidnext, modseq, count = local
        known = (uidvalidity, uidnext, modseq)
        status = remote.status
        if uidvalidity is None:
            self._initial(remote, folder_id)
        elif status is not None and status.uidvalidity != uidvalidity:
            self._remap(remote, folder_id, uidvalidity)
        elif (
            status is not None
            and (status.uidvalidity, status.uidnext, status.highestmodseq) == known
            and status.messages == count
        ):
            self._note(remote.name, count, count)
        else:
            self._incremental(remote, folder_id, known, count)

    def _initial(self, remote: ServerFolder, folder_id: uuid.UUID) -> None:
        selected = self.imap.select_folder(remote.raw_name, readonly=True)
        server_uids = self.imap.search_uids("ALL")
        with self.ctx.db.session() as session:
            have = ingest.stored_uids(session, folder_id, selected.uidvalidity)
            self.report.deleted += ingest.delete_uids(
                session, folder_id, sorted(have - set(server_uids))
            )
        self._fetch_new(remote, folder_id, selected.uidvalidity, server_uids, have)
        self._checkpoint(folder_id, selected.uidvalidity, selected.uidnext, selected.highestmodseq)

    def _incremental(
        self,
        remote: ServerFolder,
        folder_id: uuid.UUID,
        known: tuple[int | None, int | None, int | None],
        count: int,
        selected: SelectResult | None = None,
    ) -> None:
        """``selected``: the folder already selected (with QRESYNC when offered)."""
        uidvalidity, uidnext, modseq = known
        assert uidvalidity is not None
        qresync = self._qresync(uidvalidity, modseq)
        if selected is None:
            selected = self.imap.select_folder(remote.raw_name, readonly=True, qresync=qresync)
        if qresync is not None:
            self._quick_resync(remote, folder_id, uidvalidity, uidnext or 1, selected, count)
            return
        with self.ctx.db.session() as session:
            have = ingest.stored_uids(session, folder_id, uidvalidity)
        server_uids = self.imap.search_uids("ALL")
        vanished = have - set(server_uids)
        since = modseq if "CONDSTORE" in self.imap.capabilities and modseq else None
        flags = self.imap.fetch_flags("1:*", changedsince=since)
        changed = {u: (c.flags, c.modseq) for u, c in flags.items() if u in have}
        with self.ctx.db.session() as session:
            self.report.deleted += ingest.delete_uids(session, folder_id, sorted(vanished))
            self.report.flag_updates += ingest.update_flags(
                session, folder_id, uidvalidity, changed
            )
        self._fetch_new(remote, folder_id, uidvalidity, server_uids, have - vanished)
        self._checkpoint(folder_id, uidvalidity, selected.uidnext, selected.highestmodseq)

    def _quick_resync(
        self,
        remote: ServerFolder,
        folder_id: uuid.UUID,
        uidvalidity: int,
        uidnext: int,
        selected: SelectResult,
        count: int,
    ) -> None:
        """QRESYNC told what vanished and what changed: read only those UIDs and the new
        end of the folder from our copy, never every UID of a large folder."""
        vanished = sorted(selected.vanished)
        new_uids = [u for u in self.imap.search_uids(f"UID {uidnext}:*") if u >= uidnext]
        asked = set(selected.changed) | set(new_uids)
        with self.ctx.db.session() as session:
            have = ingest.stored_uids(session, folder_id, uidvalidity, among=asked)
            # New mail is among the changes too; it is stored with its flags when fetched
            changed = {u: (c.flags, c.modseq) for u, c in selected.changed.items() if u in have}
            deleted = ingest.delete_uids(session, folder_id, vanished)
            self.report.deleted += deleted
            self.report.flag_updates += ingest.update_flags(
                session, folder_id, uidvalidity, changed
            )
        stored = count - deleted  # the folder's rows now, the new ones already stored included
        self._fetch_new(remote, folder_id, uidvalidity, new_uids, have, stored=stored)
        self._checkpoint(folder_id, uidvalidity, selected.uidnext, selected.highestmodseq)

    def _remap(self, remote: ServerFolder, folder_id: uuid.UUID, old_validity: int) -> None:
        selected = self.imap.select_folder(remote.raw_name, readonly=True)
        server_uids = self.imap.search_uids("ALL")
        old = folders_repo.old_rows_by_digest(self.ctx.db, folder_id, old_validity)
        fresh: list[FetchedMessage] = []
        survivors: list[tuple[uuid.UUID, FetchedMessage]] = []
        for message in self.imap.fetch_messages(server_uids):
            digest = self.ctx.blobs.put(message.body)
            if old.get(digest):
                survivors.append((old[digest].pop(), message))
            else:
                fresh.append(message)
            if len(survivors) >= BATCH_MESSAGES:
                self._rekey(selected.uidvalidity, survivors)
                survivors = []
            if len(fresh) >= BATCH_MESSAGES:
                self._store(remote, folder_id, selected.uidvalidity, fresh, 0, 0)
                fresh = []
        self._rekey(selected.uidvalidity, survivors)
        self._store(remote, folder_id, selected.uidvalidity, fresh, 0, 0)
        self._drain()
        with self.ctx.db.session() as session:
            leftovers = [row_id for ids in old.values() for row_id in ids]
            self.report.deleted += folders_repo.delete_rows(session, leftovers)
        self._checkpoint(folder_id, selected.uidvalidity, selected.uidnext, selected.highestmodseq)

    def _rekey(self, uidvalidity: int, survivors: list[tuple[uuid.UUID, FetchedMessage]]) -> None:
        """Commit a batch of surviving rows under their new UIDs, after what came before."""
        self._drain()
        self.ctx.blobs.flush()
        with self.ctx.db.session() as session:
            self.report.remapped += folders_repo.rekey(
                session, self.ctx.tenant_id, self.ctx.account_id, uidvalidity, survivors
            )

    # --- fetching and storing -----------------------------------------------------------
    def _fetch_new(
        self,
        remote: ServerFolder,
        folder_id: uuid.UUID,
        uidvalidity: int,
        server_uids: list[int],
        have: set[int],
        stored: int | None = None,
    ) -> None:
        """Fetch ``server_uids`` not in ``have``, newest first. Progress counts the folder's
        stored rows as done: ``have`` among ``server_uids``, or ``stored`` when the caller
        read only part of the folder."""
        todo = sorted(set(server_uids) - have, reverse=True)
        if stored is None:
            total, done = len(set(server_uids)), len(have & set(server_uids))
        else:
            done = stored
            total = stored + len(todo)
        self._note(remote.name, done, total)
        self.preparer.start(len(todo))
        if done and 0 < len(todo) <= BATCH_MESSAGES and not self.preparer.parallel:
            self._fetch_increment(remote, folder_id, uidvalidity, todo, done, total)
            return
        first = FIRST_BATCH if done == 0 or len(todo) > BATCH_MESSAGES else len(todo)
        newest, older = todo[:first], todo[first:]
        done = self._fetch_batches(remote, folder_id, uidvalidity, newest, done, total, not older)
        if older:
            self._drain()  # the newest are committed before the rest is fetched
            self._fetch_batches(remote, folder_id, uidvalidity, older, done, total, True)

    def _row_scope(self, folder_id: uuid.UUID, uidvalidity: int) -> dict[str, Any]:
        """The values every message row of this folder's UID range shares."""
        return {
            "tenant_id": self.ctx.tenant_id,
            "account_id": self.ctx.account_id,
            "folder_id": folder_id,
            "uidvalidity": uidvalidity,
        }

    def _fetch_increment(
        self,
        remote: ServerFolder,
        folder_id: uuid.UUID,
        uidvalidity: int,
        uids: list[int],
        done: int,
        total: int,
    ) -> None:
        """New mail of a folder synced before (at most a batch): each message parsed as
        it arrives, the rows stored in chunks meanwhile, all committed by the checkpoint
        (``increment.py``)."""
        scope = self._row_scope(folder_id, uidvalidity)
        increment = self._increment = Increment(remote.name, done, total)
        insert = partial(self._insert_chunk, increment)
        self.writer.submit(partial(increment.write, self.ctx.db, insert))
        for message in self.imap.fetch_messages(uids, newest_first=True):
            increment.add(self.options.row(message, scope, self.ctx.blobs), len(message.body))
        increment.send()

    def _insert_chunk(
        self,
        increment: Increment,
        session: Session,
        rows: list[ingest.Incoming],
        size: int,
        done: int,
    ) -> int:
        """On the writer thread: one chunk of an increment."""
        name, total = increment.name, increment.total
        return self._insert(session, name, rows, size, done, total, copy=False)

    def _fetch_batches(
        self,
        remote: ServerFolder,
        folder_id: uuid.UUID,
        uidvalidity: int,
        uids: list[int],
        done: int,
        total: int,
        last: bool = False,
    ) -> int:
        """Fetch ``uids`` newest first and hand them over in batches; returns ``done``.
        ``last``: the folder's checkpoint follows, and commits the final batch with it."""
        batch: list[FetchedMessage] = []
        size = 0
        for message in self.imap.fetch_messages(uids, newest_first=True):
            batch.append(message)
            size += len(message.body)
            if len(batch) >= BATCH_MESSAGES or size >= BATCH_BYTES:
                done += self._store(remote, folder_id, uidvalidity, batch, done, total)
                batch, size = [], 0
        return done + self._store(remote, folder_id, uidvalidity, batch, done, total, last)

    def _store(
        self,
        remote: ServerFolder,
        folder_id: uuid.UUID,
        uidvalidity: int,
        batch: list[FetchedMessage],
        done: int,
        total: int,
        last: bool = False,
    ) -> int:
        if not batch:
            return 0
        scope = self._row_scope(folder_id, uidvalidity)
        size = sum(len(m.body) for m in batch)
        parts = self.preparer.submit(batch, scope)
        self._parsing.append(_Parsing(parts, remote.name, size, done + len(batch), total))
        if last:  # the checkpoint's transaction commits it: one transaction less per folder
            self._held = self._parsing.pop()
            return len(batch)
        # With a pool, batches parse while the next ones are fetched; inline, at once.
        ahead = PARSE_AHEAD if self.preparer.parallel else 0
        while len(self._parsing) > ahead:
            self._hand_over(self._parsing.popleft())
        return len(batch)

    def _hand_over(self, parsing: _Parsing) -> None:
        """Wait for a batch's rows and queue them for the writer thread."""
        prepared = [row for part in parsing.parts for row in part.result()]
        self.writer.submit(
            partial(self._write, parsing.name, prepared, parsing.size, parsing.done, parsing.total)
        )

    def _drain(self) -> None:
        """Every batch fetched so far parsed and committed."""
        held, self._held = self._held, None
        if held is not None:
            self._parsing.append(held)
        while self._parsing:
            self._hand_over(self._parsing.popleft())
        self.writer.drain()

    def _write(
        self, name: str, prepared: list[ingest.Incoming], size: int, done: int, total: int
    ) -> None:
        """On the writer thread: make the blobs durable, then commit the rows."""
        self.ctx.blobs.flush()
        with self.ctx.db.session() as session:
            inserted = self._insert(session, name, prepared, size, done, total)
            self._beat(session)
        self._written(name, inserted, size, done, total)

    def _insert(
        self,
        session: Session,
        name: str,
        prepared: list[ingest.Incoming],
        size: int,
        done: int,
        total: int,
        copy: bool = True,
    ) -> int:
        inserted = ingest.insert_batch(session, prepared, copy=copy)
        self.report.new_messages += inserted
        self.report.bytes += size
        self._note(name, done, max(total, done))
        return inserted

    def _written(self, name: str, inserted: int, size: int, done: int, total: int) -> None:
        metrics.count_emails("synced", inserted)  # committed
        if self.ctx.progress:
            self.ctx.progress(name, done, total, size)

    def _checkpoint(
        self, folder_id: uuid.UUID, uidvalidity: int, uidnext: int, modseq: int | None
    ) -> None:
        if self._increment is not None:
            self._close_increment(folder_id, uidvalidity, uidnext, modseq)
            return
        held, self._held = self._held, None  # the folder's final batch, committed below
        self._drain()  # the checkpoint promises every row below uidnext is stored
        rows = [row for part in held.parts for row in part.result()] if held else []
        inserted = 0
        if held is not None:
            self.ctx.blobs.flush()
        with self.ctx.db.session() as session:
            if held is not None:
                inserted = self._insert(session, held.name, rows, held.size, held.done, held.total)
            folders_repo.checkpoint(session, folder_id, uidvalidity, uidnext, modseq)
            self._beat(session, force=True)
        if held is not None:
            self._written(held.name, inserted, held.size, held.done, held.total)

    def _close_increment(
        self, folder_id: uuid.UUID, uidvalidity: int, uidnext: int, modseq: int | None
    ) -> None:
        """The open increment's checkpoint, in its transaction; the blobs are made
        durable while its last rows are inserted, before the commit."""
        increment = self._increment
        assert increment is not None

        def close(session: Session) -> None:
            folders_repo.checkpoint(session, folder_id, uidvalidity, uidnext, modseq)
            self._beat(session, force=True)

        self.ctx.blobs.flush()
        increment.finish(close)
        self._increment = None
        self.writer.drain()
        self._written(
            increment.name,
            increment.inserted,
            increment.size,
            increment.done + increment.parsed,
            increment.total,
        )

    def _note(self, name: str, done: int, total: int) -> None:
        self.report.per_folder[name] = {"done": done, "total": total}

    def _beat(self, session: Session, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_beat > 1.0:
            progress: dict[str, Any] = {"folders": self.report.per_folder}
            sync_state.heartbeat(
                session,
                self.ctx.account_id,
                self.ctx.owner,
                progress,
                self.report.new_messages,
                self.report.bytes,
                self.ctx.lock_ttl,
            )
            self._last_beat = now


def _folder_order(folder: ServerFolder) -> tuple[int, str]:
    rank = ROLE_ORDER.index(folder.role) if folder.role in ROLE_ORDER else len(ROLE_ORDER)
    return rank, folder.name
