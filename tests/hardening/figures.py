"""The figures the hardening suite measures, one JSON file each, for ``report.py``.

Every test records its figure *before* it asserts, so a failing run still leaves the
number that failed, and a test that cannot run records why it skipped. Files go to
``HARDENING_RESULTS`` (default ``bench/results/hardening/``), one per figure, so the two
pytest-xdist workers never write the same file.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from tests.servers.require import server_missing

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = Path(os.environ.get("HARDENING_RESULTS", REPO / "bench" / "results" / "hardening"))
# Areas in the order of issue 7's list; report.py renders them in this order.
AREAS = (
    "bad input",
    "injection",
    "html",
    "isolation and auth",
    "ssrf",
    "secrets",
    "faults",
    "load",
)


@dataclass(frozen=True)
class Figure:
    """One measured number (or a skip) and what it should be."""

    key: str  # stable id, e.g. "bad-input.schemathesis.server-errors"
    area: str
    name: str
    value: Any
    target: str
    met: bool | None  # None: reported, no target to meet (e.g. a latency)
    note: str = ""
    skipped: str = ""  # the reason, when the figure could not be measured here
    run_id: str = ""
    recorded_at: float = 0.0


def _run_id() -> str:
    # pytest-xdist gives every worker of one run the same uid; a plain run gets its own.
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or os.environ.setdefault(
        "HARDENING_RUN_ID", f"local-{int(time.time())}-{os.getpid()}"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def record(
    area: str, name: str, value: Any, target: str, met: bool | None, note: str = ""
) -> Figure:
    """Write one figure; returns it."""
    assert area in AREAS, area
    figure = Figure(
        key=f"{_slug(area)}.{_slug(name)}",
        area=area,
        name=name,
        value=value,
        target=target,
        met=met,
        note=note,
        run_id=_run_id(),
        recorded_at=time.time(),
    )
    _write(figure)
    return figure


def zero(area: str, name: str, count: int, note: str = "") -> int:
    """Record a count whose target is 0; returns it (assert it afterwards)."""
    record(area, name, count, "0", count == 0, note)
    return count


def skip(area: str, name: str, reason: str) -> NoReturn:
    """Record that a figure could not be measured for want of a server, then skip the test
    (fail with REQUIRE_SERVERS=1)."""
    figure = Figure(
        key=f"{_slug(area)}.{_slug(name)}",
        area=area,
        name=name,
        value=None,
        target="",
        met=None,
        skipped=reason,
        run_id=_run_id(),
        recorded_at=time.time(),
    )
    _write(figure)
    server_missing(reason)


def _write(figure: Figure) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{figure.key}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(figure), indent=2, default=str) + "\n")
    tmp.replace(path)


def load(directory: Path = RESULTS_DIR) -> list[Figure]:
    """Every recorded figure in ``directory``."""
    return [Figure(**json.loads(p.read_text())) for p in sorted(directory.glob("*.json"))]
