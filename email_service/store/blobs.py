"""Content-addressed blob store for raw MIME: ``<root>/ab/cd/<sha256>``.

Writes are atomic (temporary file, then rename) and idempotent (the same bytes land on
the same name), so a sync that dies between writing a blob and committing its row leaves
at worst an unreferenced file, never a row without its message.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

from email_service.errors import NotFoundError


class BlobStore:
    """Blobs under one directory, named by the SHA-256 of their content."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync  # durable before the referencing row commits (power loss)
        self._unsynced = False
        self._root = str(root)
        self._directories: set[str] = set()  # fan-out directories known to exist
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where a blob lives."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise NotFoundError("no such blob")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Store bytes; return their SHA-256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        directory = os.path.join(self._root, digest[:2], digest[2:4])
        target = os.path.join(directory, digest)
        if os.path.exists(target):
            return digest
        if directory not in self._directories:
            os.makedirs(directory, exist_ok=True)
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
        self._unsynced = True
        return digest

    def flush(self) -> None:
        """Make every blob written so far durable; call before committing rows that use them.

        One sync(2) per batch instead of an fsync per file: the same guarantee for a batch
        of hundreds of messages at the cost of one call.
        """
        if self.fsync and self._unsynced:
            os.sync()
        self._unsynced = False

    def get(self, digest: str) -> bytes:
        """The bytes of a blob, or NotFoundError."""
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFoundError("no such blob") from None

    def exists(self, digest: str) -> bool:
        """True if the blob is stored."""
        return self.path(digest).exists()
