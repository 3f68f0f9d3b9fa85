"""OpenAPI 3.1 document details that APIFlask does not derive from the routes.

Bearer auth and the tenant header on every /api operation, and error responses
documented as ``application/problem+json`` with the Problem schema, so the document
says exactly what the service answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask_swagger_ui
from apiflask import APIBlueprint, APIFlask
from flask import Response, send_from_directory

from email_service.api.auth import PUBLIC_PATHS
from email_service.api.problems import PROBLEM_MIMETYPE, TITLES
from email_service.api.schemas import Problem

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
        for path, operations in spec.get("paths", {}).items():
            for operation in operations.values():
                if isinstance(operation, dict) and "responses" in operation:
                    _operation(operation, path.startswith("/api/"), tenant_header)
                    if path in PUBLIC_PATHS:  # a token is optional there (api/auth.py)
                        operation["security"] = [{"BearerAuth": []}, {}]
        return spec


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
