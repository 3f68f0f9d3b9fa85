"""Files the service creates are private: DATA_DIR and LOG_DIR hold mail text.

Every entry point (the command, the WSGI app, the Celery app, Gunicorn's config) calls
``private_umask`` first, so whatever the umask it was started with, what it creates is
0700 (directories) and 0600 (files). A DATA_DIR or LOG_DIR that exists already keeps its
mode (it may be shared); the service warns when others can enter it.
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


def private_dir(path: Path) -> bool:
    """Create ``path`` and its missing parents 0700; True if it was missing.

    An existing directory is left as it is (it may be shared, like /tmp): ``open_to_others``
    tells the caller whether to warn.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):  # mkdir(parents=True) would use the umask's modes
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
    return bool(missing)


def open_to_others(path: Path) -> bool:
    """True if group or others may enter or read the directory."""
    return bool(path.stat().st_mode & 0o077)


def private_file(fd: int) -> None:
    """Make an open file 0600 (a file created by a library that ignores our modes)."""
    if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
        os.fchmod(fd, FILE_MODE)
