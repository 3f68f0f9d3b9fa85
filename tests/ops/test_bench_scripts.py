"""Every benchmark under bench/ still starts: its imports resolve and a script parses ``--help``.

The benchmarks import the test servers and helpers, which move; nothing else runs them in
``make test``, so a moved name would only show the next time someone measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Run by the system interpreter, beside its notmuch bindings; takes positional arguments.
OTHER_INTERPRETER = {"bench/search/notmuch_search.py"}
SCRIPTS = sorted(
    str(path.relative_to(ROOT))
    for path in (ROOT / "bench").rglob("*.py")
    if str(path.relative_to(ROOT)) not in OTHER_INTERPRETER
)


def test_the_benchmarks_are_found() -> None:
    assert {"bench/push/bench_push.py", "bench/send/bench_send.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_starts(script: str) -> None:
    done = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if "__main__" in (ROOT / script).read_text():  # a script, not a module others import
        assert "usage" in done.stdout.lower(), done.stdout[-500:]
