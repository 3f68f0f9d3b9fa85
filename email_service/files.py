"""Files the service creates are private: DATA_DIR and LOG_DIR hold mail text.

Every entry point (the command, the WSGI app, the Celery app, Gunicorn's config) calls
``private_umask`` first, so whatever the umask it was started with, what it creates is
0700 (directories) and 0600 (files); ``private_dir`` also tightens a directory an earlier
version made, which keeps what is inside it out of other users' reach.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Group and others get nothing, whatever umask the process was started with.
PRIVATE_UMASK = 0o077
DIR_MODE, FILE_MODE = 0o700, 0o600


def private_umask() -> None:
    """Make this process (and the programs it runs) create private files."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) 0700, or make an existing one 0700; returns it."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):  # mkdir(parents=True) would use the umask's modes
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def private_file(fd: int) -> None:
    """Make an open file 0600 (a file created by a library that ignores our modes)."""
    if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
        os.fchmod(fd, FILE_MODE)
