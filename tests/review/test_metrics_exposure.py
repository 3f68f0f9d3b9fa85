"""Finding 1: /metrics answers only the operator (METRICS_TOKEN; off in production without
one), names no tenant or account in its label values, and /health/ready is rate-limited
like the rest."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from email_service.app import create_app
from email_service.security.crypto import generate_key
from email_service.store import migrate
from email_service.store.models import Account
from tests.conftest import TENANT_A, TENANT_B

METRICS_TOKEN = secrets.token_urlsafe(32)


def _app(sqlite_settings: Any, **extra: Any) -> Any:
    app = create_app(sqlite_settings(**extra), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    return app


def _add_accounts(app: Any) -> list[str]:
    runtime = app.extensions["email_service"]
    ids = []
    with runtime.db.session() as session:
        for tenant in (TENANT_A, TENANT_B):
            row = Account(
                id=uuid.uuid4(),
                tenant_id=tenant,
                email=f"x@{tenant}.test",
                username=f"x@{tenant}.test",
                password_ciphertext="c",
                password_key_id="k",
                password_scheme="fernet",
                imap_host="127.0.0.1",
                imap_port=993,
                imap_security="ssl",
                smtp_host="127.0.0.1",
                smtp_port=587,
                smtp_security="starttls",
            )
            session.add(row)
            ids.append(str(row.id))
    return ids


def test_metrics_need_the_metrics_token(sqlite_settings: Any) -> None:
    client = _app(sqlite_settings, metrics_token=METRICS_TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.mimetype == "application/problem+json"
    right = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert right.status_code == 200 and b"requests_total" in right.data


def test_production_without_a_metrics_token_serves_none(sqlite_settings: Any) -> None:
    settings = sqlite_settings(
        jwt_secret=secrets.token_urlsafe(48),
        encryption_key=[generate_key()],
        allow_unpatched_python=True,
    ).model_copy(update={"flask_env": "production"})
    app = create_app(settings, configure_logs=False)
    assert app.test_client().get("/metrics").status_code == 404


def test_metrics_name_no_tenant_or_account(sqlite_settings: Any) -> None:
    app = _app(sqlite_settings, metrics_token=METRICS_TOKEN)
    ids = _add_accounts(app)
    text = (
        app.test_client()
        .get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        .get_data(as_text=True)
    )
    assert "sync_lag_seconds" in text and "sync_lag_max_seconds" in text
    for secret in (TENANT_A, TENANT_B, *ids, "tenant_id=", "account_id="):
        assert secret not in text, secret
    assert 'sync_lag_seconds_bucket{le="+Inf"} 2.0' in text  # both tenants' accounts, unnamed


def test_readiness_is_rate_limited(sqlite_settings: Any) -> None:
    app = _app(sqlite_settings, rate_limit_enabled=True, rate_limit_requests_per_minute=2)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.77.0.1"
    statuses = [client.get("/health/ready").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.get("/health").status_code == 200  # liveness stays exempt
