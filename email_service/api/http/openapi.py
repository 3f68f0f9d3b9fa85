"""OpenAPI 3.1 document details that APIFlask does not derive from the routes.

Bearer auth and the tenant header on every /api operation, and error responses
documented as ``application/problem+json`` with the Problem schema, so the document
says exactly what the service answers. It is also the contract clients are generated
from (docs/clients.md), so:

- every model is one component under its own class name. APIFlask's pydantic adapter
  registers a model nested in another as ``Parent.Child``, once per parent (its ``$ref``
  template); generators drop those as duplicates. Here they become ``Child``, and two
  different models with one name stop the document from being built;
- every operation has an ``operationId``: the view function's name unless the route's
  ``doc(operation_id=...)`` names it, so a generated method is ``list_accounts``;
- components no operation reaches (APIFlask's own error schemas) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_swagger_ui
from apiflask import APIBlueprint, APIFlask
from flask import Response, send_from_directory

from email_service.api.http.auth import PUBLIC_PATHS
from email_service.api.http.problems import PROBLEM_MIMETYPE, TITLES
from email_service.api.http.schemas import Problem

SWAGGER_DIST = Path(flask_swagger_ui.__file__).parent / "dist"
ASSETS = "/docs/assets"
# Answers every authenticated operation can give besides its own.
API_ERRORS = (400, 401, 403, 413, 429)
# Gunicorn answers this itself, in HTML, when the request line is over its limit (4094
# bytes): a query string of non-ASCII text can be that long within the schemas' limits.
URI_TOO_LONG = {
    "description": "URI Too Long: the request line is over the server's limit",
    "content": {"text/html": {"schema": {"type": "string"}}},
}

SCHEMAS = "#/components/schemas/"
# A Flask rule's variable, `<uuid:account_id>`, is `{account_id}` in an OpenAPI path.
RULE_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")

assets = APIBlueprint("docs_assets", __name__, url_prefix=ASSETS)


@assets.get("/<path:filename>")
@assets.doc(hide=True)
def asset(filename: str) -> Response:
    """Swagger UI files shipped in the flask-swagger-ui package (no CDN)."""
    return send_from_directory(SWAGGER_DIST, filename, max_age=86400)


def configure(app: APIFlask, tenant_header: str) -> None:
    """Point the docs UI at local assets and post-process the generated document."""
    app.config.update(
        OPENAPI_VERSION="3.1.0",
        SWAGGER_UI_CSS=f"{ASSETS}/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS=f"{ASSETS}/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS=f"{ASSETS}/swagger-ui-standalone-preset.js",
        DOCS_FAVICON=f"{ASSETS}/favicon-32x32.png",
        INFO={
            "description": "Multi-tenant email backend: accounts, IMAP sync, search, "
            "composition and sending. Errors are RFC 9457 problem details."
        },
    )
    app.security_schemes = {
        "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    app.register_blueprint(assets)

    @app.spec_processor
    def _process(spec: dict[str, Any] | str) -> dict[str, Any] | str:
        assert isinstance(spec, dict)
        spec.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
            Problem.model_json_schema()
        )
        endpoints = _endpoints(app)
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "responses" in operation:
                    operation.setdefault("operationId", endpoints[path, method])
                    _operation(operation, path.startswith("/api/"), tenant_header)
                    if path in PUBLIC_PATHS:  # a token is optional there (api/auth.py)
                        operation["security"] = [{"BearerAuth": []}, {}]
        _check_unique_operation_ids(spec)
        _plain_component_names(spec)
        _drop_unreached_components(spec)
        return spec


def _endpoints(app: APIFlask) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) -> the view function's name, a generated method's name."""
    names: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        path = RULE_VARIABLE.sub(r"{\1}", rule.rule)
        for method in rule.methods or ():
            names[path, method.lower()] = rule.endpoint.rsplit(".", 1)[-1]
    return names


def _check_unique_operation_ids(spec: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "operationId" in operation:
                where = f"{method.upper()} {path}"
                first = seen.setdefault(operation["operationId"], where)
                if first != where:
                    raise ValueError(f"operationId {operation['operationId']!r}: {first}, {where}")


def _plain_component_names(spec: dict[str, Any]) -> None:
    """Name each model once, by its own name: `Parent.Child` becomes `Child` everywhere."""
    for node in _nodes(spec):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMAS):
            node["$ref"] = SCHEMAS + ref.removeprefix(SCHEMAS).rsplit(".", 1)[-1]
    merged: dict[str, Any] = {}
    for name, schema in spec["components"]["schemas"].items():
        plain = name.rsplit(".", 1)[-1]
        if merged.setdefault(plain, schema) != schema:
            raise ValueError(f"two different models are named {plain!r}: rename one")
    spec["components"]["schemas"] = merged


def _drop_unreached_components(spec: dict[str, Any]) -> None:
    schemas: dict[str, Any] = spec["components"]["schemas"]
    reached: set[str] = set()
    pending = list(_schema_refs(spec.get("paths", {})))
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(_schema_refs(schemas[name]))
    spec["components"]["schemas"] = {n: s for n, s in schemas.items() if n in reached}


def _schema_refs(node: Any) -> Iterator[str]:
    for item in _nodes(node):
        ref = item.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMAS):
            yield ref.removeprefix(SCHEMAS)


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in the document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _operation(operation: dict[str, Any], is_api: bool, tenant_header: str) -> None:
    responses: dict[str, Any] = operation["responses"]
    if is_api:
        operation["security"] = [{"BearerAuth": []}]
        operation.setdefault("parameters", []).append(
            {
                "name": tenant_header,
                "in": "header",
                "required": False,
                "description": "tenant to act for; defaults to DEFAULT_TENANT_ID",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
            }
        )
        for status in API_ERRORS:
            responses.setdefault(str(status), {"description": TITLES[status]})
        responses.setdefault("414", URI_TOO_LONG)
    else:
        operation["security"] = []
    for code, response in responses.items():
        if str(code).isdigit() and int(code) >= 400 and str(code) != "414":
            response["content"] = {
                PROBLEM_MIMETYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }
