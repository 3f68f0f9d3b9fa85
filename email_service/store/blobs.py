"""Raw MIME and uploads, one namespace per tenant: ``<root>/tenants/t_<tenant>/ab/<sha256>``.

Within a tenant blobs are content-addressed: the same bytes land on the same name, so a
write is idempotent. Across tenants nothing is shared: a purge removes the tenant's
directory and nothing else, and one tenant's writes reveal nothing about another's mail.

Writes are atomic (temporary file, then rename) and are made durable by ``flush`` before
the row that names them commits, so a process that dies in between leaves at worst an
unreferenced blob, never a row without its message. Unreferenced blobs are removed by
``services.deletion`` once their modification time is older than a grace period; a write
of bytes already stored refreshes that time, so a blob about to be referenced again is
never collected under its writer.

One level of 256 directories: a second level (``ab/cd/``, the layout of earlier versions,
still read) meant a new directory for nearly every blob of a first sync, and creating a
directory costs as much as writing a message. A million blobs make about 4,000 names per
directory, which ext4 and XFS index. Blobs of versions without tenant namespaces (directly
under ``<root>``) are still read, until ``services.deletion`` moves them into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from email_service.errors import NotFoundError
from email_service.files import DIR_MODE, FILE_MODE, private_dir

# Up to this many new files per flush are fsync'd one by one (with their directories);
# beyond it one sync(2) is cheaper. sync(2) writes back every dirty page of the machine,
# so a single outgoing message must not wait for a mailbox sync's gigabytes.
FSYNC_EACH_MAX = 16
# A tenant id as the API admits it (security.tokens.TENANT_RE): used as is in a name.
PLAIN_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore(ABC):
    """The blobs of one tenant."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store bytes (idempotent; refreshes the age of bytes already stored); their SHA-256."""

    @abstractmethod
    def flush(self) -> None:
        """Make every blob written so far durable; call before committing rows that use them."""

    @abstractmethod
    def get(self, digest: str) -> bytes:
        """The bytes of a blob, or NotFoundError."""

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """True if the blob is stored."""

    @abstractmethod
    def delete(self, digest: str) -> bool:
        """Remove a blob; False if there was none (idempotent)."""

    @abstractmethod
    def listing(self) -> Iterator[tuple[str, float]]:
        """Every stored blob's digest and modification time (seconds since the epoch)."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the tenant's namespace and everything in it (idempotent)."""

    def remove_temporaries(self, older_than: float) -> int:
        """Remove what writers that died left half-written (none where writes are atomic)."""
        return 0

    @abstractmethod
    def prune(self) -> None:
        """Drop what an empty namespace leaves behind (directories; nothing in object stores)."""


class BlobSpace(ABC):
    """Where every tenant's blobs live; ``tenant`` opens one namespace."""

    @abstractmethod
    def tenant(self, tenant_id: str) -> BlobStore:
        """The namespace of one tenant."""

    @abstractmethod
    def tenants(self) -> list[str]:
        """The tenants that have a namespace."""

    @abstractmethod
    def legacy(self) -> BlobStore | None:
        """Blobs written before namespaces existed (shared by content), if any."""


def tenant_key(tenant_id: str) -> str:
    """The namespace name of a tenant: ``t_<id>`` for API ids, else ``x_<hex of UTF-8>``."""
    if PLAIN_TENANT.match(tenant_id):
        return f"t_{tenant_id}"
    return f"x_{tenant_id.encode().hex()}"


def tenant_of_key(key: str) -> str | None:
    """The tenant a namespace name stands for (None: not a namespace name)."""
    if key.startswith("t_") and PLAIN_TENANT.match(key[2:]):
        return key[2:]
    if key.startswith("x_"):
        with contextlib.suppress(ValueError):
            return bytes.fromhex(key[2:]).decode()
    return None


class FileBlobStore(BlobStore):
    """Blobs under one directory, named by the SHA-256 of their content."""

    def __init__(self, root: Path, fsync: bool = True, fallback: Path | None = None) -> None:
        self.root = root
        self.fsync = fsync  # durable before the referencing row commits (power loss)
        self.fallback = fallback  # a read-only tree consulted when a blob is not in root
        self._unsynced: list[str] = []  # files written since the last flush
        self._new_directories: list[str] = []  # directories made since the last flush
        self._lock = threading.Lock()  # puts and flush may run on different threads
        self._root = str(root)
        self._directories: set[str] = set()  # fan-out directories known to exist

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its arguments (a process pool's workers open their own)."""
        return (FileBlobStore, (self.root, self.fsync, self.fallback))

    def path(self, digest: str) -> Path:
        """Where a blob lives (written by an earlier version: where it was put then)."""
        if not HEX64.match(digest):
            raise NotFoundError("no such blob")
        path = self.root / digest[:2] / digest
        for root in (self.root, self.fallback) if self.fallback else (self.root,):
            for candidate in (root / digest[:2] / digest, root / digest[:2] / digest[2:4] / digest):
                if candidate.exists():
                    return candidate
        return path

    def put(self, data: bytes) -> str:
        """Store bytes; return their SHA-256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        directory = os.path.join(self._root, digest[:2])
        target = os.path.join(directory, digest)
        with contextlib.suppress(FileNotFoundError):
            os.utime(target)  # already stored: young again, so no sweep takes it now
            return digest
        try:
            self._write(directory, target, data)
        except FileNotFoundError:  # a sweep pruned the directory since we last saw it
            self._directories.discard(directory)
            self._write(directory, target, data)
        with self._lock:
            self._unsynced.append(target)
        return digest

    def _write(self, directory: str, target: str, data: bytes) -> None:
        """Write ``target`` atomically, making its fan-out directory if needed."""
        if directory not in self._directories:
            if not os.path.isdir(directory):
                if not os.path.isdir(self._root):
                    private_dir(self.root)
                os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
                with self._lock:
                    self._new_directories.append(directory)
            self._directories.add(directory)
        # A name no other writer uses (content-addressed, so only the same bytes compete).
        tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def flush(self) -> None:
        """Make every blob written so far durable; call before committing rows that use them.

        A few files (an API write) are fsync'd with the directories that name them; a batch
        of hundreds (a sync) gets one sync(2) instead: the same guarantee at the cost of
        one call.
        """
        with self._lock:
            files, self._unsynced = self._unsynced, []
            made, self._new_directories = self._new_directories, []
        if not self.fsync or not files:
            return
        if len(files) > FSYNC_EACH_MAX:
            os.sync()
            return
        for path in files:
            _fsync(path)
        parents = {os.path.dirname(path) for path in files}
        for directory in made:  # a new directory's entry lives in its parent
            parents.add(os.path.dirname(directory))
        for directory in sorted(parents, key=len, reverse=True):
            _fsync(directory)

    def get(self, digest: str) -> bytes:
        """The bytes of a blob, or NotFoundError."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFoundError("no such blob") from None

    def exists(self, digest: str) -> bool:
        """True if the blob is stored (False for a name that is no digest)."""
        return bool(HEX64.match(digest)) and self.path(digest).exists()

    def delete(self, digest: str) -> bool:
        """Remove a blob from this store (never from the fallback); False if it was not there."""
        if not HEX64.match(digest):
            return False
        removed = False
        for path in (
            self.root / digest[:2] / digest,
            self.root / digest[:2] / digest[2:4] / digest,
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed = True
        return removed

    def listing(self) -> Iterator[tuple[str, float]]:
        """Every blob in this store (both layouts) with its modification time."""
        yield from _walk(self.root, depth=2)

    def remove_temporaries(self, older_than: float) -> int:
        """Remove temporary files of writers that died before their rename."""
        removed = 0
        for fan in _scan(self.root):
            if fan.is_dir(follow_symlinks=False) and len(fan.name) == 2:
                for entry in _scan(Path(fan.path)):
                    if entry.name.endswith(".tmp") and _mtime(entry) < older_than:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                            removed += 1
        return removed

    def prune(self) -> None:
        """Remove empty fan-out directories, and the namespace itself once empty."""
        for fan in _scan(self.root):
            if fan.is_dir(follow_symlinks=False) and len(fan.name) == 2:
                with contextlib.suppress(OSError):  # not empty: a writer got there first
                    os.rmdir(fan.path)
        with contextlib.suppress(OSError):
            os.rmdir(self.root)

    def destroy(self) -> None:
        """Remove the whole directory."""
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():  # something failed to go: say so rather than pretend
            shutil.rmtree(self.root)


class FileBlobSpace(BlobSpace):
    """Every tenant's blobs under one directory (DATA_DIR/blobs)."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root.resolve()  # a process pool's fork server keeps its own cwd
        self.fsync = fsync

    def tenant(self, tenant_id: str) -> FileBlobStore:
        """``<root>/tenants/<key>``; reads fall back to blobs of the shared layout."""
        path = self.root / "tenants" / tenant_key(tenant_id)
        return FileBlobStore(path, self.fsync, fallback=self.root)

    def tenants(self) -> list[str]:
        """Tenants with a directory."""
        with contextlib.suppress(FileNotFoundError):
            names = [tenant_of_key(entry.name) for entry in os.scandir(self.root / "tenants")]
            return sorted(name for name in names if name is not None)
        return []

    def legacy(self) -> FileBlobStore | None:
        """The shared tree of earlier versions, when one has fan-out directories left."""
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
                    return FileBlobStore(self.root, self.fsync)
        return None


def _scan(directory: Path) -> list[os.DirEntry[str]]:
    """The entries of a directory; none if it is gone."""
    try:
        return list(os.scandir(directory))
    except FileNotFoundError:
        return []


def _mtime(entry: os.DirEntry[str]) -> float:
    """An entry's modification time (infinitely young if it vanished meanwhile)."""
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return float("inf")


def _walk(directory: Path, depth: int) -> Iterator[tuple[str, float]]:
    """Blob files under fan-out directories (``ab/`` and, below depth 2, ``ab/cd/``)."""
    for entry in _scan(directory):
        if entry.is_dir(follow_symlinks=False):
            if len(entry.name) == 2 and depth > 0:
                yield from _walk(Path(entry.path), depth - 1)
        elif HEX64.match(entry.name) and (mtime := _mtime(entry)) != float("inf"):
            yield entry.name, mtime


def _fsync(path: str) -> None:
    """fsync a file or a directory (POSIX: a directory is opened read-only for this)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
