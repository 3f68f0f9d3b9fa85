"""Health, readiness (naming what is down), OpenAPI 3.1 and the offline docs UI."""

from __future__ import annotations

import re
from typing import Any

import pytest

from email_service.app import create_app
from email_service.store import migrate
from tests.conftest import REDIS_URL


def test_health_is_the_spec_body_without_auth(client: Any) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "healthy", "service": "email_service"}


def test_ready_when_database_at_head(client: Any) -> None:
    body = client.get("/health/ready").get_json()
    assert body["status"] == "ready" and body["checks"] == {"database": "ok"}


def test_not_ready_before_migration(sqlite_settings: Any) -> None:
    app = create_app(sqlite_settings(), configure_logs=False)
    response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert "database" in response.get_json()["detail"]
    assert "migrate" in response.get_json()["checks"]["database"]


def test_not_ready_names_each_down_dependency(sqlite_settings: Any) -> None:
    settings = sqlite_settings(
        database_url="postgresql://postgres@127.0.0.1:1/none",  # nothing listens on port 1
        redis_url="redis://127.0.0.1:1/0",
    )
    response = create_app(settings, configure_logs=False).test_client().get("/health/ready")
    assert response.status_code == 503
    problem = response.get_json()
    assert problem["code"] == "not_ready"
    assert problem["detail"] == "not ready: database, redis unavailable"
    assert problem["checks"]["database"].startswith("down")
    assert problem["checks"]["redis"].startswith("down")


@pytest.mark.redis
def test_ready_checks_real_redis(sqlite_settings: Any) -> None:
    app = create_app(sqlite_settings(redis_url=REDIS_URL), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    body = app.test_client().get("/health/ready").get_json()
    assert body["checks"] == {"database": "ok", "redis": "ok"}


def test_openapi_document(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    paths = spec["paths"]
    assert {"get", "post"} <= paths["/api/accounts"].keys()
    assert {"get", "put", "delete"} <= paths["/api/accounts/{account_id}"].keys()
    create = paths["/api/accounts"]["post"]
    assert create["security"] == [{"BearerAuth": []}]
    assert "application/problem+json" in create["responses"]["422"]["content"]
    assert paths["/health"]["get"]["security"] == []
    body_schema = spec["components"]["schemas"]["AccountCreate"]
    assert set(body_schema["required"]) == {"email"}  # and a password or OAuth2 tokens
    assert {"password", "oauth"} <= body_schema["properties"].keys()
    assert "password" not in spec["components"]["schemas"]["AccountOut"]["properties"]


def test_docs_ui_is_served_without_a_cdn(client: Any) -> None:
    page = client.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets, page[:300]
    for url in assets:
        assert not url.startswith(("http:", "https:", "//")), url
        assert client.get(url).status_code == 200, url
