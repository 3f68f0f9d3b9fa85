"""Content-addressed blob store for raw MIME: ``<root>/ab/cd/<sha256>``.

Writes are atomic (temporary file, then rename) and idempotent (the same bytes land on
the same name), so a sync that dies between writing a blob and committing its row leaves
at worst an unreferenced file, never a row without its message.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from email_service.errors import NotFoundError


class BlobStore:
    """Blobs under one directory, named by the SHA-256 of their content."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync  # durable before the referencing row commits (power loss)
        self._unsynced = False
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where a blob lives."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise NotFoundError("no such blob")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Store bytes; return their SHA-256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
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
