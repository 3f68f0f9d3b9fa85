"""prometheus-client multiprocess files: one directory per server, wiped at start.

Each process of a Gunicorn or Celery server writes its samples to mmap files in
``PROMETHEUS_MULTIPROC_DIR`` (``counter_<pid>.db``, ``histogram_<pid>.db``,
``gauge_livesum_<pid>.db``); a scrape merges every file. A process that exits (a Gunicorn
worker after ``max_requests``, a Celery pool child) leaves its files behind, and its
counts must stay in the totals. Left alone they pile up, one set per worker lifetime, and
every scrape reads them all. So when a process exits, its live gauges are dropped
(``mark_process_dead``) and its counters and histograms are merged into one archive file
per type, then removed. Scrapes take the directory's lock shared and a merge takes it
exclusive, so a scrape never counts a sample twice or misses it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import mmap_dict, multiprocess

ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_NAME = ".lock"  # not *.db: the collector reads only *.db files
# Types whose dead-process samples must survive (gauges in live* modes die with the process).
ARCHIVED_TYPES = ("counter", "histogram")
# prometheus-client's multiprocess helpers carry no type hints.
_mmaped_dict: Any = mmap_dict.MmapedDict
_merge: Any = multiprocess.MultiProcessCollector.merge
_mark_process_dead: Any = multiprocess.mark_process_dead


def prepare(path: Path) -> Path:
    """Create ``path`` empty of samples (a server's start) and point this process at it.

    Call before ``prometheus_client`` is imported in the processes that will write.
    """
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(path.resolve())
    return path


def current() -> Path | None:
    """The multiprocess directory of this process, if multiprocess mode is on."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


@contextmanager
def locked(path: Path, exclusive: bool) -> Iterator[None]:
    """Hold the directory's lock: shared for reading, exclusive for merging."""
    with (path / LOCK_NAME).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_exited(pid: int, path: Path | None = None) -> None:
    """Bookkeeping for a dead process: drop its live gauges, archive its counts."""
    path = path or current()
    if path is None or not path.is_dir():
        return
    _mark_process_dead(pid, str(path))
    with locked(path, exclusive=True):
        for typ in ARCHIVED_TYPES:
            _archive(path, typ, path / f"{typ}_{pid}.db")


def _archive(path: Path, typ: str, dead: Path) -> None:
    if not dead.exists():
        return
    archive = path / f"{typ}_archive.db"
    sources = [str(p) for p in (archive, dead) if p.exists()]
    merged = _merge(sources, accumulate=False)
    partial = path / f"{typ}_archive.partial"  # not *.db until complete
    partial.unlink(missing_ok=True)
    store = _mmaped_dict(str(partial))
    try:
        for metric in merged:
            for sample in metric.samples:
                key = mmap_dict.mmap_key(
                    metric.name,
                    sample.name,
                    list(sample.labels),
                    list(sample.labels.values()),
                    metric.documentation,
                )
                store.write_value(key, sample.value, sample.timestamp or 0.0)
    finally:
        store.close()
    partial.replace(archive)
    dead.unlink()


def sample_files(path: Path) -> list[Path]:
    """The sample files a scrape reads now."""
    return sorted(path.glob("*.db"))
