"""What the Schemathesis run found, pinned: answers the OpenAPI document did not describe."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TENANT_A
from tests.hardening.stack import SERVICE_GROUP


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


def test_sending_a_draft_without_recipients_is_a_documented_422(
    client: Any, as_tenant: Any
) -> None:
    headers = as_tenant(TENANT_A)
    account = {"email": "a@example.test", "password": "pw", "imap_host": "127.0.0.1"}
    assert client.post("/api/accounts", json=account, headers=headers).status_code == 201
    draft = client.post("/api/compose", json={"subject": "s", "body": "b"}, headers=headers)
    response = client.post(f"/api/compose/send/{draft.get_json()['id']}", headers=headers)
    assert response.status_code == 422, response.get_json()
    spec = client.get("/openapi.json").get_json()
    content = _documented(spec, "/api/compose/send/{draft_id}", "post", 422)
    assert response.mimetype in content


@pytest.mark.postgres
@pytest.mark.redis
@SERVICE_GROUP
def test_a_long_non_ascii_search_within_the_schema_gets_a_documented_414(service: Any) -> None:
    query = "検索" * 500  # 1,000 characters, the schema's maxLength; 9 bytes each in the URL
    response = service.call("GET", "/api/sync/search", "st-414", params={"query": query})
    assert response.status_code == 414
    spec = service.call("GET", "/openapi.json").json()
    content = _documented(spec, "/api/sync/search", "get", 414)
    assert response.headers["Content-Type"].split(";")[0] in content
