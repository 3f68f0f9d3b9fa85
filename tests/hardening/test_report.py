"""report.py renders every figure, says what was skipped and lists the targets missed."""

from __future__ import annotations

from pathlib import Path

from tests.hardening import report
from tests.hardening.figures import Figure


def _figure(key: str, **values: object) -> Figure:
    base = {
        "key": key,
        "area": "faults",
        "name": key,
        "value": 0,
        "target": "0",
        "met": True,
        "run_id": "r2",
        "recorded_at": 2_000_000_000.0,
    }
    return Figure(**{**base, **values})  # type: ignore[arg-type]


def test_render_shows_results_skips_and_misses() -> None:
    figures = [
        _figure("faults.a", name="messages lost", note="lost 0"),
        _figure("faults.b", name="worker exits", value=1, met=False, note="upstream bug"),
        _figure("load.c", area="load", name="p99", value=12.5, target="", met=None),
        _figure("html.d", area="html", name="runs", target="", met=None, skipped="no chromium"),
        _figure("faults.a", name="messages lost", value=3, run_id="r1", recorded_at=1.0),
    ]
    text = report.render(figures)
    assert "| messages lost | 0 | 0 | met |" in text  # the newest of the two faults.a
    assert "| worker exits | 1 | 0 | **not met** |" in text
    assert "| p99 | 12.5 |  | reported |" in text
    assert "| runs | — |  | skipped |" in text and "skipped: no chromium" in text
    missed = text.split("## Targets not met", 1)[1]
    assert "worker exits" in missed and "upstream bug" in missed
    assert "## Isolation and auth" in text  # every area has its section, measured or not


def test_main_writes_the_document(tmp_path: Path) -> None:
    from tests.hardening import figures

    results = tmp_path / "results"
    results.mkdir()
    saved = figures.RESULTS_DIR
    figures.RESULTS_DIR = results
    try:
        figures.record("load", "p99", 1.0, "", None)
    finally:
        figures.RESULTS_DIR = saved
    output = tmp_path / "reliability.md"
    assert report.main(["--results", str(results), "--output", str(output)]) == 0
    assert "| p99 | 1.0 |" in output.read_text()
    assert report.main(["--results", str(results), "--check"]) == 0
