"""Parsing in worker processes: the CPU-bound half of a large sync spread over the cores.

One interpreter parses, tokenizes and hashes about 300 messages a second, and a thread
cannot help (the GIL). A sync with many messages to fetch therefore hands each batch to a
pool of processes started through a fork server (never a fork of this threaded process):
they store the raw bytes in the blob store, parse, build the search document, make their
blobs durable, and send back the rows. The sync thread keeps the IMAP connection and the
order of batches; the writer thread keeps the database. Small runs (an incremental sync)
parse inline, where a pool would only add start-up time, and so do Celery's prefork
children, which may not start processes of their own (they are daemonic).

Nothing changes for correctness: a row is committed only after its blob was flushed by the
process that wrote it, and a pool that breaks (a worker killed) fails the run, which the
task layer retries like any other error; checkpoints were never passed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from email_service.mail.imap.session import FetchedMessage
from email_service.mail.mime.parse import Limits
from email_service.services.sync import ingest
from email_service.store.blobs import BlobStore

log = logging.getLogger(__name__)

# Fewer new messages than this parse inline: starting the pool costs about half a second.
PARALLEL_MIN_MESSAGES = 1000
# Modules the fork server imports once, so that each worker starts ready to parse.
PRELOAD = ["email_service.services.sync.ingest"]


@dataclass(frozen=True)
class ParseOptions:
    """How fetched messages become rows (``ingest.prepare``'s options)."""

    limits: Limits
    parse_bodies: bool
    tsvector: bool

    def row(
        self, message: FetchedMessage, scope: dict[str, Any], blobs: BlobStore
    ) -> ingest.Incoming:
        """The message's row; its raw MIME stored in ``blobs`` (not yet flushed)."""
        return ingest.prepare(message, scope, blobs, self.limits, self.parse_bodies, self.tsvector)

    def rows(
        self, batch: Sequence[FetchedMessage], scope: dict[str, Any], blobs: BlobStore
    ) -> list[ingest.Incoming]:
        """The batch's rows (:meth:`row` of each)."""
        return [self.row(m, scope, blobs) for m in batch]


class _Worker:
    """State of one pool process, set by its initializer."""

    blobs: BlobStore
    options: ParseOptions


def _init(blobs: BlobStore, options: ParseOptions) -> None:
    _Worker.blobs = blobs  # a copy made from the store's arguments (its __reduce__)
    _Worker.options = options


def _prepare(batch: Sequence[FetchedMessage], scope: dict[str, Any]) -> list[ingest.Incoming]:
    prepared = _Worker.options.rows(batch, scope, _Worker.blobs)
    _Worker.blobs.flush()  # durable before the parent commits the rows that name them
    return prepared


def parse_processes(setting: int | None) -> int:
    """Pool size: the setting (SYNC_PARSE_PROCESSES), else one per core, none on one core."""
    if setting is not None:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores if cores and cores > 1 else 0


class Preparer:
    """Turns fetched batches into rows, inline or in a process pool."""

    def __init__(self, blobs: BlobStore, options: ParseOptions, processes: int) -> None:
        self.blobs, self.options, self.processes = blobs, options, processes
        self._pool: ProcessPoolExecutor | None = None

    def start(self, messages: int) -> None:
        """Start the pool if a run of this many new messages is worth it (idempotent)."""
        if self._pool is not None or self.processes < 1 or messages < PARALLEL_MIN_MESSAGES:
            return
        if multiprocessing.current_process().daemon:
            # A Celery prefork child may not have children; its worker runs tasks in
            # parallel already (--concurrency), one account each.
            self.processes = 0
            return
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        try:
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=context,
                initializer=_init,
                initargs=(self.blobs, self.options),
            )
        except OSError as exc:  # no semaphores (/dev/shm), no processes left
            log.warning("parsing inline: no process pool (%s)", exc)
            self.processes = 0

    @property
    def parallel(self) -> bool:
        """True once batches go to the process pool."""
        return self._pool is not None

    def submit(
        self, batch: Sequence[FetchedMessage], scope: dict[str, Any]
    ) -> list[Future[list[ingest.Incoming]]]:
        """Futures of the batch's rows, in order (one per process's share of the batch)."""
        if self._pool is None:
            done: Future[list[ingest.Incoming]] = Future()
            done.set_result(self.options.rows(batch, scope, self.blobs))
            return [done]
        share = -(-len(batch) // self.processes)  # ceiling: every process gets a part
        return [
            self._pool.submit(_prepare, batch[start : start + share], scope)
            for start in range(0, len(batch), share)
        ]

    def close(self) -> None:
        """Stop the pool's processes (pending work is cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
