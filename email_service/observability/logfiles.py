"""Size-rotated log files shared by several processes (Gunicorn workers, Celery children).

The standard RotatingFileHandler assumes one writer: with several, each rotates on its
own view of the size, renaming files under the others, who then write into ``.1`` and
rotate again. Here every process checks the file at the path, not its own stream: if
another process rotated it (the inode changed) it reopens, and the one that rotates
does so under a lock, re-checking the size first, so a file rotates once.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any

from email_service.private_files import open_append


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler that several processes can write and rotate safely."""

    def __init__(
        self, filename: str | Path, max_bytes: int, backup_count: int, level: int = logging.NOTSET
    ) -> None:
        super().__init__(
            filename, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
        )
        self.setLevel(level)
        self.lock_path = f"{self.baseFilename}.lock"
        self.path = Path(self.baseFilename)
        self.opened: tuple[int, int] | None = None  # (device, inode) of our stream's file

    def _open(self) -> Any:
        stream: Any = open_append(self.baseFilename, self.encoding, self.errors)  # 0600
        found = os.fstat(stream.fileno())
        self.opened = (found.st_dev, found.st_ino)
        return stream

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - logging's name
        """Follow another process's rotation; True once the file at the path is full.

        One stat of the path per line: it tells both whether the path still names our
        file and how full that file is.
        """
        try:
            found = self.path.stat()
        except FileNotFoundError:
            self._close_stream()
            return False
        if self.stream is not None and (found.st_dev, found.st_ino) != self.opened:
            self._close_stream()
        return 0 < self.maxBytes <= found.st_size

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        """Rotate under an inter-process lock, unless another process just did."""
        with Path(self.lock_path).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._follow()
                if _size(self.baseFilename) >= self.maxBytes:
                    super().doRollover()  # the stream reopens on the next emit (delay)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _follow(self) -> None:
        """Close our stream if the path now names another file (rotated elsewhere)."""
        if self.stream is None:
            return
        try:
            found = self.path.stat()
        except FileNotFoundError:
            found = None
        if found is None or (found.st_dev, found.st_ino) != self.opened:
            self._close_stream()

    def _close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # reopened on the next emit


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0
