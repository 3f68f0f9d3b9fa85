"""Finding 4: the SSRF exemption for the operator's default servers holds only for that
protocol's own default (protocol, host, port, security); ``localhost:587`` is not an IMAP
server because it is the SMTP default, and vice versa."""

from __future__ import annotations

from typing import Any

import pytest

from email_service.app import create_app
from email_service.store import migrate
from tests.conftest import TENANT_A, TENANT_B

DEFAULTS = {
    "imap_host": "localhost",
    "imap_port": 993,
    "imap_security": "ssl",
    "smtp_host": "localhost",
    "smtp_port": 587,
    "smtp_security": "starttls",
    "allowed_mail_hosts": [],
}
REFUSED = {
    "IMAP on the SMTP default port": {"imap_host": "localhost", "imap_port": 587},
    "SMTP on the IMAP default port": {"smtp_host": "localhost", "smtp_port": 993},
    "IMAP default port, other security": {"imap_host": "localhost", "imap_security": "none"},
    "SMTP default port, other security": {"smtp_host": "localhost", "smtp_security": "none"},
    "IMAP default host, other port": {"imap_host": "localhost", "imap_port": 143},
}


@pytest.fixture
def client(sqlite_settings: Any) -> Any:
    app = create_app(sqlite_settings(**DEFAULTS), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    return app.test_client()


def _create(client: Any, as_tenant: Any, tenant: str, email: str, **fields: Any) -> Any:
    body = {"email": email, "password": "pw", **fields}
    return client.post("/api/accounts", headers=as_tenant(tenant), json=body)


def test_the_exact_defaults_are_still_admitted(client: Any, as_tenant: Any) -> None:
    assert _create(client, as_tenant, TENANT_A, "a@example.test").status_code == 201
    assert _create(client, as_tenant, TENANT_B, "b@example.test").status_code == 201


@pytest.mark.parametrize("fields", REFUSED.values(), ids=REFUSED.keys())
def test_defaults_of_another_protocol_port_or_security_are_refused(
    client: Any, as_tenant: Any, fields: dict[str, Any]
) -> None:
    answer = _create(client, as_tenant, TENANT_A, "a@example.test", **fields)
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["code"] == "blocked_host"
    created = _create(client, as_tenant, TENANT_B, "b@example.test")
    assert created.status_code == 201
    changed = client.put(
        f"/api/accounts/{created.get_json()['id']}", headers=as_tenant(TENANT_B), json=fields
    )
    assert changed.status_code == 422, changed.get_json()
