"""Owner-only files and directories, whatever the process umask.

The SQLite database (and its -wal and -shm, which SQLite creates with the database file's
permissions), the blobs (message text), generated secrets and the logs hold mail; a
umask of 022 would make them world-readable. Files are created 0600, directories 0700;
ones that already exist are narrowed to that.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it owner-only; return it."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    with contextlib.suppress(PermissionError):  # a directory the operator owns: leave it
        if path.stat().st_mode & 0o077:
            path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if missing, and make it owner-only; return it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def open_append(path: str, encoding: str | None, errors: str | None = None) -> object:
    """A text stream appending to ``path``, created 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    return os.fdopen(fd, "a", encoding=encoding, errors=errors)
