"""What the Schemathesis run found, pinned: answers the OpenAPI document did not describe."""

from __future__ import annotations

from typing import Any

import pytest


def _documented(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path}: {status} not documented"
    return dict(responses[str(status)].get("content", {}))


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/metrics"])
def test_operational_routes_answer_as_documented(client: Any, path: str) -> None:
    spec = client.get("/openapi.json").get_json()
    response = client.get(path)
    assert response.status_code == 200
    content = _documented(spec, path, "get", response.status_code)
    assert response.mimetype in content, (response.mimetype, list(content))
