"""The client's routes without a browser: the page and its headers, the development sign-in."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.api import web as web_routes
from email_service.app import create_app
from email_service.security import tokens
from email_service.security.crypto import generate_key
from email_service.store import migrate
from tests.conftest import JWT_SECRET


@pytest.fixture
def web(sqlite_settings: Any) -> FlaskClient:
    app = create_app(sqlite_settings(), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    return app.test_client()


@pytest.fixture
def production(sqlite_settings: Any) -> FlaskClient:
    settings = sqlite_settings(  # production refuses weak secrets: real random ones
        flask_env="production",
        jwt_secret=secrets.token_urlsafe(48),
        encryption_key=[generate_key()],
        allow_unpatched_python=True,  # the test machine's Python may predate CVE fixes
    )
    return create_app(settings, configure_logs=False).test_client()


def test_the_page_and_its_modules_are_served_with_a_strict_policy(web: FlaskClient) -> None:
    page = web.get("/")
    assert page.status_code == 200 and b'src="/web/js/app.js"' in page.data
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    module = web.get("/web/js/app.js")
    assert module.status_code == 200 and "javascript" in module.mimetype
    assert web.get("/web/../api/web.py").status_code == 404
    assert web.get("/web/js/missing.js").status_code == 404


def test_dev_sign_in_mints_a_short_token_for_that_tenant_only(web: FlaskClient) -> None:
    assert web.get("/web/config").get_json()["login"] == "dev"
    answer = web.post("/web/dev-token", json={"tenant": "tenant-a"})
    assert answer.status_code == 200
    body = answer.get_json()
    principal = tokens.verify(body["token"], JWT_SECRET)
    assert principal.tenants == frozenset({"tenant-a"}) and body["expires_in"] <= 3600
    auth = {"Authorization": f"Bearer {body['token']}"}
    assert web.get("/api/accounts", headers={**auth, "X-Tenant-ID": "tenant-a"}).status_code == 200
    other = web.get("/api/accounts", headers={**auth, "X-Tenant-ID": "tenant-b"})
    assert other.status_code == 403
    bad = web.post("/web/dev-token", json={"tenant": "no spaces"})
    assert bad.status_code == 422 and bad.get_json()["code"] == "validation_error"


def test_dev_sign_in_is_refused_in_production(production: FlaskClient) -> None:
    assert production.get("/web/config").get_json()["login"] == "token"
    refused = production.post("/web/dev-token", json={"tenant": "tenant-a"})
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "dev_login_disabled"
    assert production.get("/").status_code == 200


def test_the_client_is_told_where_the_change_stream_is(sqlite_settings: Any) -> None:
    app = create_app(sqlite_settings(events_port=5123), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    client = app.test_client()
    same = client.get("/web/config")
    assert same.get_json()["events_url"] == "/api/events"  # nginx routes it on this origin
    assert "connect-src 'self';" in same.headers["Content-Security-Policy"]
    app.config[web_routes.EVENTS_EMBEDDED] = True  # what `serve` sets when it runs the server
    embedded = client.get("/web/config", base_url="http://localhost:5000")
    assert embedded.get_json()["events_url"] == "http://localhost:5123/api/events"
    assert (
        "connect-src 'self' http://localhost:5123;" in embedded.headers["Content-Security-Policy"]
    )
    token = client.post("/web/dev-token", json={"tenant": "tenant-a"}).get_json()["token"]
    auth = {"Authorization": f"Bearer {token}", "X-Tenant-ID": "tenant-a"}
    here = client.get("/api/events", headers=auth)
    assert here.status_code == 204  # not a stream: an EventSource stops, the client polls
    odd = client.get("/", headers={"Host": "evil;script-src *"})
    assert "script-src *" not in odd.headers.get("Content-Security-Policy", "")
