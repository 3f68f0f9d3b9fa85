"""STYLE.md's layering rules, checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "email_service"

# layer -> project layers it must not import
FORBIDDEN = {
    "mail": {"api", "jobs", "services", "store", "observability", "security", "app", "cli"},
    "security": {"api", "jobs", "services", "store", "mail", "observability", "app", "cli"},
    "store": {"api", "jobs", "services", "app", "cli"},
    "services": {"api", "jobs", "app", "cli"},
    "api": {"jobs", "cli", "store.models", "mail"},
    "jobs": {"api", "cli"},
}
# third-party packages a layer must not import
FORBIDDEN_LIBS = {
    "services": {"flask", "apiflask", "celery", "werkzeug"},
    "mail": {"flask", "apiflask", "celery", "sqlalchemy"},
    "security": {"flask", "apiflask", "celery", "sqlalchemy"},
    "store": {"flask", "apiflask", "celery"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_back_edges(path: Path) -> None:
    layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    bad: list[str] = []
    for name in _imports(path):
        top = name.split(".")[0]
        if top in FORBIDDEN_LIBS.get(layer, set()):
            bad.append(name)
        if top == "email_service":
            inner = name.removeprefix("email_service.").removeprefix("email_service")
            if any(inner == f or inner.startswith(f + ".") for f in FORBIDDEN.get(layer, set())):
                bad.append(name)
    assert not bad, f"{layer} must not import {bad}"


def test_the_walk_sees_every_layer() -> None:
    layers = {p.relative_to(PACKAGE).parts[0] for p in _modules()}
    assert {"api", "services", "store", "security", "jobs", "observability"} <= layers
