"""Helpers for compose/outbox tests: an app per test, accounts, drafts, waiting for a state."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask.testing import FlaskClient

from email_service.app import create_app
from email_service.config import Settings
from email_service.services.runtime import Runtime
from email_service.store import migrate
from email_service.store.models import Base
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.wait import wait_for
from tests.support.mailgen import imap_login, quote

# The documented composition example (docs/sending.md).
SPEC_BODY = {
    "to": ["recipient@example.com"],
    "subject": "Email Subject",
    "body": "Email body text",
    "cc": ["cc@example.com"],
    "bcc": ["bcc@example.com"],
}
# Retries in milliseconds, not minutes.
FAST_RETRIES = {"send_retry_base_seconds": 0.05, "send_retry_max_seconds": 0.2}


@contextmanager
def running_app(settings: Settings) -> Iterator[tuple[FlaskClient, Runtime]]:
    """An app on a migrated database, its tables emptied and its job runner stopped after."""
    app = create_app(settings, configure_logs=False)
    runtime: Runtime = app.extensions["email_service"]
    migrate.upgrade(runtime.db.engine)
    try:
        yield app.test_client(), runtime
    finally:
        shutdown = getattr(runtime.queue, "shutdown", None)
        if shutdown is not None:
            shutdown()
        with runtime.db.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        runtime.db.dispose()


def add_account(api: FlaskClient, headers: dict[str, str], email: str, **servers: Any) -> str:
    """Register an account; servers default to nothing listening (port 9)."""
    body = {
        "email": email,
        "password": "secret",
        "smtp_host": "127.0.0.1",
        "smtp_port": 9,
        "smtp_security": "none",
        "imap_host": "127.0.0.1",
        "imap_port": 9,
        "imap_security": "none",
        **servers,
    }
    response = api.post("/api/accounts", headers=headers, json=body)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def compose(api: FlaskClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    """POST /api/compose with the documented body, changed by ``body``."""
    response = api.post("/api/compose", headers=headers, json={**SPEC_BODY, **body})
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def send(api: FlaskClient, headers: dict[str, str], draft_id: str) -> dict[str, Any]:
    """POST /api/compose/send/{id}; the outbox row."""
    response = api.post(f"/api/compose/send/{draft_id}", headers=headers)
    assert response.status_code == 202, response.get_json()
    return dict(response.get_json())


def wait_state(api: FlaskClient, headers: dict[str, str], outbox_id: str, *states: str) -> Any:
    """The outbox row once it is in one of ``states``."""

    def current() -> Any:
        row = api.get(f"/api/outbox/{outbox_id}", headers=headers).get_json()
        return row if row["state"] in states else None

    return wait_for(current, f"outbox {outbox_id} to reach {states}")


def wait_sent_copy(api: FlaskClient, headers: dict[str, str], outbox_id: str) -> Any:
    """The outbox row once its Sent copy is settled (no longer ``pending``): a send's last
    write, after the 250 is written."""

    def current() -> Any:
        row = api.get(f"/api/outbox/{outbox_id}", headers=headers).get_json()
        return row if row["sent_copy"] != "pending" else None

    return wait_for(current, f"outbox {outbox_id}'s Sent copy")


@contextmanager
def mail_stack(
    settings: Settings, postfix: Any, dovecot: Any, as_tenant: Any
) -> Iterator[dict[str, Any]]:
    """The app, and Alice (tenant A) and Bob (tenant B) registered with the real servers."""
    users = {
        name: dovecot.add_user(f"{name}-{secrets.token_hex(4)}@example.test", "pw-" + name)
        for name in ("alice", "bob")
    }
    with running_app(settings) as (api, runtime):
        ids = {}
        for name, tenant in (("alice", TENANT_A), ("bob", TENANT_B)):
            user = users[name]
            ids[name] = add_account(
                api,
                as_tenant(tenant),
                user.email,
                password=user.password,
                display_name=name.title(),
                smtp_host="127.0.0.1",
                smtp_port=postfix.submission_port,
                smtp_security="starttls",
                imap_port=dovecot.imap_port,
            )
        yield {"api": api, "runtime": runtime, "users": users, "ids": ids}


def find(dovecot: Any, user: Any, folder: str, message_id: str) -> list[bytes]:
    """Raw copies of the message in a folder, found by Message-ID over IMAP."""
    with imap_login(dovecot, user) as client:
        client.select(quote(folder), readonly=True)
        typ, data = client.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
        assert typ == "OK"
        found = []
        for uid in data[0].split():
            typ, parts = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            assert typ == "OK" and isinstance(parts[0], tuple)
            found.append(bytes(parts[0][1]))
        return found


def delivered(dovecot: Any, user: Any, message_id: str) -> list[bytes]:
    """Wait for Postfix to hand the message to Dovecot; the INBOX copies."""
    return list(wait_for(lambda: find(dovecot, user, "INBOX", message_id), "delivery"))
