"""/openapi.json as a contract clients are generated from: plain model names, one
operationId per operation, every error answer described by the Problem schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from apiflask import APIFlask
from pydantic import BaseModel

from email_service.api.http import openapi
from email_service.app import create_app

PROBLEM = {"$ref": "#/components/schemas/Problem"}
# Gunicorn answers an over-long request line itself, in HTML: documented as it is.
GUNICORN_HTML = "414"
# Generated methods are named after these; a rename breaks every generated client.
PINNED_OPERATION_IDS = {
    ("get", "/api/accounts"): "list_accounts",
    ("post", "/api/accounts"): "create_account",
    ("get", "/api/accounts/{account_id}"): "get_account",
    ("put", "/api/accounts/{account_id}"): "update_account",
    ("delete", "/api/accounts/{account_id}"): "delete_account",
    ("get", "/api/messages"): "list_messages",
    ("get", "/api/messages/{message_id}"): "get_message",
    ("get", "/api/threads/{thread_id}"): "get_thread",
    ("get", "/api/compose/drafts"): "list_drafts",
    ("get", "/api/sync/search"): "search_messages",
    ("get", "/health"): "get_health",
}


@pytest.fixture
def spec(sqlite_settings: Any) -> dict[str, Any]:
    app = create_app(sqlite_settings(), configure_logs=False)
    document: dict[str, Any] = app.test_client().get("/openapi.json").get_json()
    return document


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield method, path, operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_component_names_are_plain_class_names(spec: dict[str, Any]) -> None:
    names = list(spec["components"]["schemas"])
    assert [n for n in names if "." in n] == []
    assert [n for n in names if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", n)] == []
    for expected in ("AccountPage", "AccountOut", "Security", "MessagePage", "MessageSummary"):
        assert expected in names
    for gone in ("HTTPError", "ValidationError"):  # APIFlask's, never sent by the service
        assert gone not in names


def test_every_reference_resolves_and_every_component_is_used(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    refs = set(_refs(spec))
    assert {r for r in refs if r.removeprefix("#/components/schemas/") not in schemas} == set()
    assert set(schemas) == {r.removeprefix("#/components/schemas/") for r in refs}


def test_nested_models_are_referenced_not_copied(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    items = schemas["AccountPage"]["properties"]["items"]["items"]
    assert items == {"$ref": "#/components/schemas/AccountOut"}
    security = schemas["AccountOut"]["properties"]["imap_security"]
    assert security == {"$ref": "#/components/schemas/Security"}


def test_every_operation_has_a_unique_method_name(spec: dict[str, Any]) -> None:
    ids = [operation.get("operationId") for _, _, operation in _operations(spec)]
    assert None not in ids
    assert [i for i in ids if not re.fullmatch(r"[a-z][a-z0-9_]*", str(i))] == []
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    found = {(m, p): o["operationId"] for m, p, o in _operations(spec)}
    assert {key: found.get(key) for key in PINNED_OPERATION_IDS} == PINNED_OPERATION_IDS


def test_every_error_answer_is_a_problem(spec: dict[str, Any]) -> None:
    errors = 0
    for method, path, operation in _operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400 or status == GUNICORN_HTML:
                continue
            errors += 1
            assert response["content"] == {"application/problem+json": {"schema": PROBLEM}}, (
                method,
                path,
                status,
            )
    assert errors > 100  # the walk saw the /api operations' errors


def test_api_operations_document_the_common_errors(spec: dict[str, Any]) -> None:
    for _, path, operation in _operations(spec):
        if path.startswith("/api/"):
            assert {"400", "401", "403", "429"} <= operation["responses"].keys(), path


class Leaf(BaseModel):
    value: int


class Branch(BaseModel):
    leaves: list[Leaf]


class Tree(BaseModel):
    branches: list[Branch]
    first: Leaf


def test_a_model_nested_anywhere_is_one_component_under_its_own_name() -> None:
    app = APIFlask("mini", spec_path="/openapi.json")
    openapi.configure(app, "X-Tenant-ID")

    @app.get("/api/tree")
    @app.output(Tree)
    def get_tree() -> dict[str, Any]:
        return {}

    @app.get("/api/branch")
    @app.output(Branch)
    def get_branch() -> dict[str, Any]:
        return {}

    document = app.spec
    assert set(document["components"]["schemas"]) == {"Tree", "Branch", "Leaf", "Problem"}
    tree = document["components"]["schemas"]["Tree"]["properties"]
    assert tree["first"] == {"$ref": "#/components/schemas/Leaf"}
    operations = {p: o["get"]["operationId"] for p, o in document["paths"].items()}
    assert operations == {"/api/tree": "get_tree", "/api/branch": "get_branch"}


def test_two_different_models_with_one_name_stop_the_document() -> None:
    other = type("Leaf", (BaseModel,), {"__annotations__": {"text": str}})
    holder = type("Holder", (BaseModel,), {"__annotations__": {"leaf": other}})
    app = APIFlask("mini", spec_path="/openapi.json")
    openapi.configure(app, "X-Tenant-ID")

    @app.get("/api/tree")
    @app.output(Tree)
    def get_tree() -> dict[str, Any]:
        return {}

    @app.get("/api/holder")
    @app.output(holder)
    def get_holder() -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="two different models are named 'Leaf'"):
        _ = app.spec


def test_two_operations_with_one_name_stop_the_document() -> None:
    app = APIFlask("mini", spec_path="/openapi.json")
    openapi.configure(app, "X-Tenant-ID")

    @app.get("/api/a")
    @app.doc(operation_id="same")
    def first() -> dict[str, Any]:
        return {}

    @app.get("/api/b")
    @app.doc(operation_id="same")
    def second() -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="operationId 'same'"):
        _ = app.spec
