"""The README and the manual name only files that exist, and link only pages that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `path/in/the/repository` written in backticks, from a top-level folder of the repository
TOP = "email_service|tests|bench|deploy|docs|scripts|\\.ci|\\.github"
PATH = re.compile(rf"`((?:{TOP})/[\w./-]*)`")
LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")
# Paths that are made at run time, not kept in the repository.
GENERATED = ("bench/results/", "data/", "logs/", "secrets/", ".venv/", "test-artifacts/")


def _named_paths(page: Path) -> list[str]:
    text = page.read_text()
    return [f for f in PATH.findall(text) if not f.startswith(GENERATED)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_files_exist(page: Path) -> None:
    missing = [f for f in _named_paths(page) if not (ROOT / f).exists()]
    assert not missing, f"{page.name} names files that are not in the repository: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page: Path) -> None:
    links = LINK.findall(page.read_text())
    missing = [link for link in links if not (page.parent / link).exists()]
    assert not missing, f"{page.name} links to pages that do not exist: {missing}"


def test_readme_is_a_short_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    assert "make run" in text and "make test" in text
