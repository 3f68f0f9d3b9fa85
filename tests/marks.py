"""Marks a folder gives its tests, so that no test file repeats them.

A folder's conftest.py may set ``pytestmark`` (marks for every test below the folder, as a
test module's ``pytestmark`` is for its tests) and ``FIXTURE_MARKS`` (marks for the tests
that use a fixture, directly or through other fixtures): ``{"dovecot": [pytest.mark.dovecot]}``.
The top-level conftest applies them as each test is collected (before pytest-xdist reads
its ``xdist_group``); tests/servers/fixtures.py declares the marks of the server fixtures.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import pytest

Marks = pytest.MarkDecorator | Iterable[pytest.MarkDecorator]


def _as_list(marks: Marks) -> list[pytest.MarkDecorator]:
    return [marks] if isinstance(marks, pytest.MarkDecorator) else list(marks)


def folder_conftests(item: pytest.Item) -> Iterator[ModuleType]:
    """The conftest modules of the folders from ``item``'s up to the root directory."""
    manager = item.config.pluginmanager
    for folder in item.path.parents:
        module = manager.get_plugin(str(folder / "conftest.py"))
        if module is not None:
            yield module
        if folder == item.config.rootpath:
            return


def folder_marks(item: pytest.Item, plugins: Iterable[Any]) -> list[pytest.MarkDecorator]:
    """The marks ``item`` gets from its folders' conftests and the given plugins."""
    found: list[pytest.MarkDecorator] = []
    for source in [*folder_conftests(item), *plugins]:
        found += _as_list(getattr(source, "pytestmark", []))
        for fixture, marks in getattr(source, "FIXTURE_MARKS", {}).items():
            if fixture in getattr(item, "fixturenames", ()):
                found += _as_list(marks)
    return found


def apply(item: pytest.Item, plugins: Iterable[Any] = ()) -> None:
    """Add the folder and fixture marks ``item`` does not carry yet."""
    have = {(mark.name, repr(mark.args)) for mark in item.iter_markers()}
    for mark in folder_marks(item, plugins):
        key = (mark.name, repr(mark.args))
        if key not in have:
            item.add_marker(mark)
            have.add(key)
