"""Clients generated from /openapi.json by common generators (docs/clients.md): no model is
dropped, the pages and messages are typed, and the generated Python client manages
accounts on the running service (Gunicorn on loopback) with typed answers."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import typing
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from email_service.app import create_app
from tests.servers.service import BIN, base_env, cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("generated-clients")]

CLIENTS = Path(__file__).parent / "clients"
# The pinned TypeScript tools are installed once per package-lock.json into this cache.
NPM_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "npm-clients"
PACKAGE = "email_service_client"
# Generous: npm ci fetches from the registry on a cold cache.
INSTALL_TIMEOUT_S = 600
GENERATE_TIMEOUT_S = 300
# Model -> (field, the model its items are) that a typed client must keep.
TYPED_LISTS = {
    "AccountPage": ("items", "AccountOut"),
    "MessagePage": ("items", "MessageSummary"),
    "ThreadOut": ("items", "MessageSummary"),
    "SearchResults": ("items", "SearchResult"),
    "DraftPage": ("items", "DraftOut"),
    "OutboxPage": ("items", "OutboxOut"),
    "MessageOut": ("attachments", "AttachmentOut"),
    "DraftOut": ("to", "RecipientOut"),
}
# Operation -> the model its success answer is parsed into.
TYPED_ANSWERS = {
    ("accounts", "list_accounts"): "AccountPage",
    ("messages", "list_messages"): "MessagePage",
    ("messages", "get_message"): "MessageOut",
    ("messages", "get_thread"): "ThreadOut",
    ("compose", "list_drafts"): "DraftPage",
    ("compose", "get_draft"): "DraftOut",
    ("search", "search_messages"): "SearchResults",
}
# (operationId, status, media type, model) of answers the TypeScript types must name.
TYPESCRIPT_ANSWERS = [
    ("list_accounts", 200, "application/json", "AccountPage"),
    ("create_account", 201, "application/json", "AccountOut"),
    ("get_account", 404, "application/problem+json", "Problem"),
    ("list_messages", 200, "application/json", "MessagePage"),
    ("get_thread", 200, "application/json", "ThreadOut"),
    ("list_drafts", 200, "application/json", "DraftPage"),
]


def _run(args: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, check=False, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def _served_document(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        document: dict[str, Any] = json.loads(response.read())
    return document


@pytest.fixture
def generate_python(tmp_path: Path) -> Iterator[Any]:
    """Run openapi-python-client on a document URL; returns the imported package."""

    def generate(url: str) -> ModuleType:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        result = _run(
            [
                str(BIN / "openapi-python-client"),
                "generate",
                "--url",
                url,
                "--meta",
                "none",
                "--output-path",
                str(tmp_path / "generated" / PACKAGE),
                "--config",
                str(CLIENTS / "openapi-python-client.yaml"),
                "--fail-on-warning",
            ],
            GENERATE_TIMEOUT_S,
            env=env,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        sys.path.insert(0, str(tmp_path / "generated"))
        return importlib.import_module(PACKAGE)

    yield generate
    if str(tmp_path / "generated") in sys.path:
        sys.path.remove(str(tmp_path / "generated"))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def _module(package: ModuleType, name: str) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_python_client_keeps_every_model_typed(serve: Any, tmp_path: Path, generate_python: Any):
    env = base_env(tmp_path)
    cli(env, "migrate")
    base, _ = serve(env)
    package = generate_python(base + "/openapi.json")
    models = _module(package, "models")
    names = set(_served_document(base + "/openapi.json")["components"]["schemas"])
    assert {name for name in names if not hasattr(models, name)} == set()
    for model, (field, item) in TYPED_LISTS.items():
        hints = typing.get_type_hints(getattr(models, model), localns=vars(models))
        assert hints[field] == list[getattr(models, item)], (model, hints[field])
    for (tag, operation), model in TYPED_ANSWERS.items():
        sync = _module(package, f"api.{tag}.{operation}").sync
        answers = typing.get_args(typing.get_type_hints(sync)["return"])
        assert getattr(models, model) in answers, (operation, answers)
        assert models.Problem in answers, operation


def test_python_client_manages_accounts_on_the_running_service(
    serve: Any, tmp_path: Path, generate_python: Any
) -> None:
    env = base_env(tmp_path)
    cli(env, "migrate")
    base, _ = serve(env)
    package = generate_python(base + "/openapi.json")
    models = _module(package, "models")
    api = {
        name: _module(package, f"api.accounts.{name}")
        for name in ("create_account", "list_accounts", "get_account", "delete_account")
    }
    token = cli(env, "token", "--tenant", "default").stdout.strip()
    other = cli(env, "token", "--tenant", "other").stdout.strip()
    ours = package.AuthenticatedClient(base_url=base, token=token)
    theirs = package.AuthenticatedClient(base_url=base, token=other)

    body = models.AccountCreate(
        email="generated@example.com", password="generated-Pa55", display_name="Generated"
    )
    created = api["create_account"].sync(client=ours, body=body)
    assert isinstance(created, models.AccountOut), created
    assert (created.email, created.display_name, created.tenant_id) == (
        "generated@example.com",
        "Generated",
        "default",
    )
    assert isinstance(created.id, uuid.UUID) and isinstance(created.created_at, datetime)
    assert isinstance(created.imap_security, models.Security)

    page = api["list_accounts"].sync(client=ours)
    assert isinstance(page, models.AccountPage), page
    assert [type(a) for a in page.items] == [models.AccountOut]
    assert page.items[0].to_dict() == created.to_dict() and page.next_cursor is None

    fetched = api["get_account"].sync(account_id=created.id, client=ours)
    assert isinstance(fetched, models.AccountOut) and fetched.to_dict() == created.to_dict()

    # Another tenant sees none of it, and its 404 is a typed problem.
    assert api["list_accounts"].sync(client=theirs, x_tenant_id="other").items == []
    hidden = api["get_account"].sync(account_id=created.id, client=theirs, x_tenant_id="other")
    assert isinstance(hidden, models.Problem), hidden
    assert (hidden.status, hidden.code) == (404, "not_found")
    refused = api["delete_account"].sync_detailed(
        account_id=created.id, client=theirs, x_tenant_id="other"
    )
    assert refused.status_code == 404

    deleted = api["delete_account"].sync_detailed(account_id=created.id, client=ours)
    assert deleted.status_code == 204
    gone = api["get_account"].sync(account_id=created.id, client=ours)
    assert isinstance(gone, models.Problem) and gone.code == "not_found"
    assert api["list_accounts"].sync(client=ours).items == []


def _npm_tools() -> Path:
    """node_modules/.bin with the pinned openapi-typescript and tsc (package-lock.json)."""
    if shutil.which("npm") is None:
        message = "npm is not installed: scripts/install-test-deps.sh installs nodejs"
        if os.environ.get("REQUIRE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    pins = b"".join((CLIENTS / n).read_bytes() for n in ("package.json", "package-lock.json"))
    target = NPM_CACHE / hashlib.sha256(pins).hexdigest()[:16]
    if not (target / "node_modules" / ".bin" / "openapi-typescript").exists():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="install-", dir=NPM_CACHE))
        for name in ("package.json", "package-lock.json"):
            shutil.copy(CLIENTS / name, staging / name)
        result = _run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            INSTALL_TIMEOUT_S,
            cwd=staging,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        try:
            staging.rename(target)
        except OSError:  # installed meanwhile by another run
            shutil.rmtree(staging)
    return target / "node_modules" / ".bin"


def _typescript_checks(names: set[str], wrong: bool) -> str:
    email = "number" if wrong else "string"
    lines = [
        'import type { components, operations } from "./api";',
        'type S = components["schemas"];',
        "type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2",
        "  ? true",
        "  : false;",
        "function check<T extends true>(): void {}",
        *(f'type Model{i} = S["{n}"];' for i, n in enumerate(sorted(names))),
        f'check<Equal<S["AccountOut"]["email"], {email}>>();',
        *(
            f'check<Equal<S["{model}"]["{field}"], S["{item}"][]>>();'
            for model, (field, item) in TYPED_LISTS.items()
        ),
        *(
            f'check<Equal<operations["{operation}"]["responses"][{status}]["content"]'
            f'["{mime}"], S["{model}"]>>();'
            for operation, status, mime, model in TYPESCRIPT_ANSWERS
        ),
    ]
    return "\n".join(lines) + "\n"


def test_typescript_types_keep_every_model_typed(tmp_path: Path, sqlite_settings: Any) -> None:
    tools = _npm_tools()
    app = create_app(sqlite_settings(), configure_logs=False)
    document = app.test_client().get("/openapi.json").get_json()
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    generated = _run(
        [str(tools / "openapi-typescript"), "openapi.json", "-o", "api.d.ts"],
        GENERATE_TIMEOUT_S,
        cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    names = set(document["components"]["schemas"])
    tsc = [str(tools / "tsc"), "--noEmit", "--strict", "--target", "es2022"]
    (tmp_path / "check.ts").write_text(_typescript_checks(names, wrong=False))
    checked = _run([*tsc, "check.ts"], GENERATE_TIMEOUT_S, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The same checks with one wrong type fail: the types are not `any`.
    (tmp_path / "wrong.ts").write_text(_typescript_checks(names, wrong=True))
    refused = _run([*tsc, "wrong.ts"], GENERATE_TIMEOUT_S, cwd=tmp_path)
    assert refused.returncode != 0
    assert "wrong.ts(" in refused.stdout and "TS2344" in refused.stdout, refused.stdout
    assert refused.stdout.count("error TS") == 1, refused.stdout
