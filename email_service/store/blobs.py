"""Content-addressed blob store for raw MIME: ``<root>/ab/<sha256>``.

Writes are atomic (temporary file, then rename) and idempotent (the same bytes land on
the same name), so a sync that dies between writing a blob and committing its row leaves
at worst an unreferenced file, never a row without its message.

One level of 256 directories: a second level (``ab/cd/``, the layout of earlier versions,
still read) meant a new directory for nearly every blob of a first sync, and creating a
directory costs as much as writing a message. A million blobs make about 4,000 names per
directory, which ext4 and XFS index.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

from email_service.errors import NotFoundError
from email_service.private_files import DIR_MODE, private_dir

# Up to this many new files per flush are fsync'd one by one (with their directories);
# beyond it one sync(2) is cheaper. sync(2) writes back every dirty page of the machine,
# so a single outgoing message must not wait for a mailbox sync's gigabytes.
FSYNC_EACH_MAX = 16


class BlobStore:
    """Blobs under one directory, named by the SHA-256 of their content."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync  # durable before the referencing row commits (power loss)
        self._unsynced: list[str] = []  # files written since the last flush
        self._new_directories: list[str] = []  # directories made since the last flush
        self._lock = threading.Lock()  # puts and flush may run on different threads
        self._root = str(root)
        self._directories: set[str] = set()  # fan-out directories known to exist
        private_dir(root)

    def path(self, digest: str) -> Path:
        """Where a blob lives (written by an earlier version: where it was put then)."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise NotFoundError("no such blob")
        path = self.root / digest[:2] / digest
        if not path.exists():
            legacy = self.root / digest[:2] / digest[2:4] / digest
            if legacy.exists():
                return legacy
        return path

    def put(self, data: bytes) -> str:
        """Store bytes; return their SHA-256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        directory = os.path.join(self._root, digest[:2])
        target = os.path.join(directory, digest)
        if os.path.exists(target):
            return digest
        if directory not in self._directories:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
                with self._lock:
                    self._new_directories.append(directory)
            self._directories.add(directory)
        # A name no other writer uses (content-addressed, so only the same bytes compete).
        tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with self._lock:
            self._unsynced.append(target)
        return digest

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
        """True if the blob is stored."""
        return self.path(digest).exists()


def _fsync(path: str) -> None:
    """fsync a file or a directory (POSIX: a directory is opened read-only for this)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
