"""POST /api/accounts/{id}/verify logs in to the real Dovecot and the real Postfix."""

from __future__ import annotations

from typing import Any

import pytest

from email_service.app import create_app
from email_service.store import migrate
from tests.conftest import TENANT_A, TENANT_B


@pytest.fixture
def api(make_settings: Any, dovecot: Any, postfix: Any) -> Any:
    app = create_app(make_settings(mail_ca_file=postfix.ca_file), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    yield app.test_client()
    from email_service.store.models import Base

    with app.extensions["email_service"].db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def _create(api: Any, as_tenant: Any, dovecot: Any, postfix: Any, user: Any, password: str) -> str:
    body = {
        "email": user.email,
        "password": password,
        "imap_host": "127.0.0.1",
        "imap_port": dovecot.imap_port,
        "imap_security": "none",
        "smtp_host": "localhost",
        "smtp_port": postfix.submission_port,
        "smtp_security": "starttls",
    }
    response = api.post("/api/accounts", json=body, headers=as_tenant(TENANT_A))
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def test_good_credentials(
    api: Any, as_tenant: Any, dovecot: Any, postfix: Any, mail_user: Any
) -> None:
    account_id = _create(api, as_tenant, dovecot, postfix, mail_user, mail_user.password)
    result = api.post(f"/api/accounts/{account_id}/verify", headers=as_tenant(TENANT_A))
    assert result.status_code == 200
    body = result.get_json()
    assert body["imap"]["ok"] and "QRESYNC" in body["imap"]["detail"]
    assert body["smtp"] == {"ok": True, "detail": "logged in"}
    assert (
        api.post(f"/api/accounts/{account_id}/verify", headers=as_tenant(TENANT_B)).status_code
        == 404
    )


def test_wrong_password_then_fixed(
    api: Any, as_tenant: Any, dovecot: Any, postfix: Any, mail_user: Any
) -> None:
    headers = as_tenant(TENANT_A)
    account_id = _create(api, as_tenant, dovecot, postfix, mail_user, "not-the-password")
    body = api.post(f"/api/accounts/{account_id}/verify", headers=headers).get_json()
    assert not body["imap"]["ok"] and not body["smtp"]["ok"]
    assert "refused" in body["imap"]["detail"] and "not-the-password" not in str(body)
    assert api.get(f"/api/accounts/{account_id}", headers=headers).get_json()["status"] == (
        "auth_failed"
    )
    api.put(f"/api/accounts/{account_id}", json={"password": mail_user.password}, headers=headers)
    body = api.post(f"/api/accounts/{account_id}/verify", headers=headers).get_json()
    assert body["imap"]["ok"] and body["smtp"]["ok"]
    assert api.get(f"/api/accounts/{account_id}", headers=headers).get_json()["status"] == (
        "active"
    )
