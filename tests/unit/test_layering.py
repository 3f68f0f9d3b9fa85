"""STYLE.md's layering rules, checked by walking every module's imports.

Each module of the package falls under the rule of its longest matching room (``mail``,
``services.outgoing``, ``config``...). A room either lists what it may import from the
project (``ALLOWED``) or what it must not (``FORBIDDEN``); ``from email_service import X``
counts as importing ``X``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "email_service"

# room -> the only project modules (and their submodules) it may import
ALLOWED = {
    "errors": set(),
    # private modes for what the service writes (DATA_DIR, LOG_DIR): used by store and logs
    "files": set(),
    # settings check secrets' strength and the interpreter (security) and make DATA_DIR
    "config": {"errors", "files", "security"},
    "observability": {"errors", "config", "observability", "files"},
    "security": {"errors", "security"},
    "mail": {"errors", "mail"},
    # the search syntax is shared with the search backends; nothing else of mail
    "store": {"errors", "store", "mail.query", "files"},
}
# room -> project modules it must not import
FORBIDDEN = {
    "services": {"api", "jobs", "app", "cli", "wsgi"},
    # sending and syncing are separate rooms that share only the gateways
    "services.outgoing": {"api", "jobs", "app", "cli", "wsgi", "services.sync"},
    "services.sync": {"api", "jobs", "app", "cli", "wsgi", "services.outgoing"},
    "services.gateways": {"api", "jobs", "app", "cli", "services.sync", "services.outgoing"},
    "services.imap_pool": {"api", "jobs", "app", "cli", "services.sync", "services.outgoing"},
    "services.runtime": {"api", "jobs", "app", "cli", "services.sync", "services.outgoing"},
    "services.hosts": {"api", "jobs", "app", "cli", "services.sync", "services.outgoing"},
    "services.paging": {"api", "jobs", "app", "cli", "services.sync", "services.outgoing"},
    "services.queue": {"api", "jobs", "app", "cli", "services.sync", "services.outgoing"},
    # the change log is written by every room, so it imports none of them
    "services.events": {
        "api",
        "jobs",
        "app",
        "cli",
        "services.sync",
        "services.outgoing",
        "services.push",
    },
    # a pushed change runs a folder sync; watchers never send
    "services.push": {"api", "jobs", "app", "cli", "services.outgoing"},
    # onboarding queues the first sync; tokens never depend on sending or push
    "services.oauth": {"api", "jobs", "app", "cli", "services.outgoing", "services.push"},
    "services.lifecycle": {"api", "jobs", "app", "cli", "services.outgoing", "services.push"},
    "api": {"jobs", "cli", "wsgi", "store.models", "store.db", "mail"},
    "jobs": {"api", "cli", "app", "wsgi"},
    # the `accounts add --oauth` command's helper: services only, like the CLI itself
    "cli_oauth": {"api", "jobs", "app", "wsgi", "store.models", "store.db", "mail"},
}
# third-party packages a room must not import
FORBIDDEN_LIBS = {
    "services": {"flask", "apiflask", "celery", "werkzeug"},
    "mail": {"flask", "apiflask", "celery", "sqlalchemy"},
    "security": {"flask", "apiflask", "celery", "sqlalchemy"},
    "store": {"flask", "apiflask", "celery"},
    "config": {"flask", "apiflask", "celery", "sqlalchemy"},
    "errors": {"flask", "apiflask", "celery", "sqlalchemy"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in {"email_service", "email_service.services", "email_service.mail"}:
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str, rules: dict[str, set[str]]) -> str | None:
    matches = [r for r in rules if module == r or module.startswith(r + ".")]
    return max(matches, key=len, default=None)


def _under(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(module: str, names: set[str]) -> list[str]:
    """The imports of ``module`` that break its room's rules."""
    bad: list[str] = []
    top = module.split(".", maxsplit=1)[0]
    for name in sorted(names):
        if name.split(".")[0] in FORBIDDEN_LIBS.get(top, set()):
            bad.append(name)
        if not name.startswith("email_service.") or name == "email_service.__version__":
            continue
        inner = name.removeprefix("email_service.")
        allowed_room = _room(module, ALLOWED)
        if allowed_room is not None and not _under(inner, ALLOWED[allowed_room] | {module}):
            bad.append(name)
        forbidden_room = _room(module, FORBIDDEN)
        if forbidden_room is not None and _under(inner, FORBIDDEN[forbidden_room]):
            bad.append(name)
    return bad


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_back_edges(path: Path) -> None:
    module = _dotted(path)
    bad = violations(module, _imports(path))
    assert not bad, f"{module} must not import {bad}"


def test_every_module_has_a_rule() -> None:
    rules: dict[str, set[str]] = {**ALLOWED, **FORBIDDEN}
    unruled = {
        _dotted(p)
        for p in _modules()
        if _room(_dotted(p), rules) is None and _dotted(p) not in {"", "app", "cli", "wsgi"}
    }
    assert not unruled, f"no layering rule covers {sorted(unruled)}"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("store.search", "email_service.mail.mime.parse"),
        ("services.outgoing.delivery", "email_service.services.sync.run"),
        ("services.sync.engine", "email_service.services.outgoing.outbox"),
        ("mail.smtp", "email_service.store.models"),
        ("config", "email_service.store.db"),
        ("errors", "email_service.config"),
        ("observability.metrics", "email_service.store.db"),
        ("api.accounts", "email_service.store.models"),
        ("services.gateways", "email_service.services.sync.state"),
        ("services.events.record", "email_service.services.outgoing.outbox"),
        ("services.push.watch", "email_service.services.outgoing.delivery"),
        ("mail.imap.session", "sqlalchemy.orm"),
    ],
)
def test_the_rules_catch_a_back_edge(module: str, name: str) -> None:
    assert violations(module, {name}) == [name]


def test_package_imports_count_as_their_modules(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from email_service import cli\nfrom email_service.services import sync\n")
    assert _imports(source) == {"email_service.cli", "email_service.services.sync"}
