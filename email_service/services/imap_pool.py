"""Logged-in IMAP sessions kept per process for the sending side (Sent copies, flags,
reconciliation searches) and for syncs: up to ``IMAP_POOL_SIZE`` idle, reused for the
same login (host, user and secret: a changed password or token never finds the old one).

A session is used by one thread at a time. One that fails is closed, never returned. A
reused session that turns out dead raises RemoteTemporaryError on its first command; the
callers' steps search before they write, so doing them again on a fresh one is safe.
A sync asks for a ``checked`` session instead: a reused one is first brought back to the
authenticated state with one round trip (UNSELECT, RFC 3691, or NOOP), and replaced by a
fresh login if that fails, so a run never starts on a dead connection or inside a folder.
Idle sessions past ``IDLE_SECONDS`` are logged out whenever the pool is used (an account
deleted or re-keyed leaves nothing open for long).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from email_service.errors import RemoteError
from email_service.mail.imap.session import ImapSession
from email_service.services import gateways
from email_service.services.runtime import Runtime

# Idle sessions older than this are logged out rather than reused: well inside the
# 30 minutes servers must allow (RFC 9051 §5.4) and short enough not to hoard them.
IDLE_SECONDS = 60.0


@dataclass
class Pooled:
    """A session and what was learnt on it (the folders of special-use roles)."""

    imap: ImapSession
    reused: bool = False
    last_used: float = field(default_factory=time.monotonic)
    role_folders: dict[str, str | None] = field(default_factory=dict)
    # Sent's UIDVALIDITY and the least UID a message added to it from now on can have, as
    # last seen on this session (EXAMINE's UIDNEXT, or past our own APPEND's UID).
    sent_next: tuple[int, int] | None = None

    def folder(self, role: str) -> str | None:
        """The raw name of the selectable folder with this RFC 6154 role (``sent``,
        ``drafts``), if any; asked of the server once per session."""
        if role not in self.role_folders:
            self.role_folders[role] = next(
                (
                    folder.raw_name
                    for folder in self.imap.list_folders(with_status=False)
                    if folder.role == role and folder.selectable
                ),
                None,
            )
        return self.role_folders[role]


class ImapPool:
    """Idle logged-in sessions by login."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[tuple[gateways.Login, Pooled]] = []
        self._lock = threading.Lock()

    @contextmanager
    def session(
        self, runtime: Runtime, login: gateways.Login, checked: bool = False
    ) -> Iterator[Pooled]:
        """A pooled (or new) session for ``login``; closed if the block raises.
        ``checked``: a reused session is known alive, with no folder selected."""
        pooled = self._take(login)
        if pooled is not None and checked and not _ready(pooled.imap):
            pooled = None
        pooled = pooled or Pooled(gateways.open_imap(runtime, login))
        try:
            yield pooled
        except BaseException:
            pooled.imap.logout()
            raise
        self._give_back(login, pooled)

    def _take(self, login: gateways.Login) -> Pooled | None:
        found = None
        now = time.monotonic()
        with self._lock:
            stale = [p for _key, p in self._idle if now - p.last_used >= IDLE_SECONDS]
            self._idle = [(k, p) for k, p in self._idle if now - p.last_used < IDLE_SECONDS]
            for index, (key, pooled) in enumerate(self._idle):
                if key == login:
                    del self._idle[index]
                    found = pooled
                    break
        for old in stale:
            old.imap.logout()
        if found is not None:
            found.reused = True
        return found

    def _give_back(self, login: gateways.Login, pooled: Pooled) -> None:
        pooled.last_used = time.monotonic()
        with self._lock:
            self._idle.append((login, pooled))
            surplus = self._idle[: max(0, len(self._idle) - self.size)]
            del self._idle[: len(surplus)]
        for _key, old in surplus:
            old.imap.logout()


def _ready(imap: ImapSession) -> bool:
    """One round trip: True if the session answers and has no folder selected (else it
    is logged out). Without UNSELECT a selected folder could only be left by CLOSE, which
    expunges in a folder selected read-write: such a session is not reused."""
    try:
        if imap.selected is None:
            imap.noop()
            return True
        if "UNSELECT" in imap.capabilities:
            imap.unselect()
            return True
    except (RemoteError, OSError):
        pass
    imap.logout()
    return False


@functools.cache
def _pool(pid: int, size: int) -> ImapPool:
    return ImapPool(size)


def imap_pool(runtime: Runtime) -> ImapPool:
    """This process's pool (a forked worker gets its own)."""
    return _pool(os.getpid(), runtime.settings.imap_pool_size)
