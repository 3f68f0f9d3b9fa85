"""POST /api/sync/imap/{id} and GET /api/sync/status/{id}, with the embedded job runner."""

from __future__ import annotations

from typing import Any

import pytest

from email_service.app import create_app
from email_service.services.sync import state as sync_state
from email_service.store import migrate
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.wait import wait_for
from tests.support.mailgen import append, imap_login, make_message

# The embedded runner works in the background; a small mailbox syncs in well under this.
WAIT_S = 60


def _create(client: Any, as_tenant: Any, dovecot: Any, user: Any, inbox: int = 0) -> str:
    """Add the account (tenant A), after ``inbox`` messages are put in its INBOX."""
    if inbox:
        with imap_login(dovecot, user) as imap:
            for i in range(inbox):
                append(imap, "INBOX", make_message(i))
    body = {
        "email": user.email,
        "password": user.password,
        "imap_host": "127.0.0.1",
        "imap_port": dovecot.imap_port,
        "imap_security": "none",
    }
    response = client.post("/api/accounts", json=body, headers=as_tenant(TENANT_A))
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def _wait_done(client: Any, headers: dict[str, str], account_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        path = f"/api/sync/status/{account_id}"
        body: dict[str, Any] = client.get(path, headers=headers).get_json()
        return body if body["state"] in ("ok", "error", "auth_failed") else None

    return wait_for(finished, "the sync to finish", WAIT_S, interval=0.1)


def test_trigger_returns_at_once_then_status_reports_progress(
    client: Any, as_tenant: Any, dovecot: Any, mail_user: Any
) -> None:
    account_id = _create(client, as_tenant, dovecot, mail_user, inbox=5)
    headers = as_tenant(TENANT_A)
    idle = client.get(f"/api/sync/status/{account_id}", headers=headers).get_json()
    assert idle["state"] == "idle" and idle["job_id"] is None
    response = client.post(f"/api/sync/imap/{account_id}", headers=headers)
    assert response.status_code == 202
    job = response.get_json()
    assert job["state"] == "queued" and not job["already_running"] and job["job_id"]
    assert job["status_url"] == f"/api/sync/status/{account_id}"
    done = _wait_done(client, headers, account_id)
    assert done["state"] == "ok", done
    assert done["job_id"] == job["job_id"]
    assert done["folders"]["INBOX"] == {"done": 5, "total": 5, "percent": 100.0}
    assert done["percent"] == 100.0
    assert done["messages_synced"] == 5 and done["bytes_synced"] > 0
    assert done["started_at"] <= done["finished_at"]


class TestFirstSyncOnCreate:
    """The default (SYNC_ON_CREATE): a new account syncs without being asked."""

    @pytest.fixture
    def settings(self, make_settings: Any) -> Any:
        return make_settings(sync_on_create=True)

    def test_a_new_account_is_synced_without_a_trigger(
        self, client: Any, as_tenant: Any, dovecot: Any, mail_user: Any
    ) -> None:
        account_id = _create(client, as_tenant, dovecot, mail_user, inbox=3)
        headers = as_tenant(TENANT_A)
        started = client.get(f"/api/sync/status/{account_id}", headers=headers).get_json()
        assert started["state"] != "idle" and started["job_id"], started
        done = _wait_done(client, headers, account_id)
        assert done["state"] == "ok" and done["folders"]["INBOX"]["done"] == 3, done
        listed = client.get("/api/messages", headers=headers).get_json()["items"]
        assert len(listed) == 3
        other = client.get("/api/messages", headers=as_tenant(TENANT_B)).get_json()["items"]
        assert other == []
        again = client.post(f"/api/sync/imap/{account_id}", headers=headers).get_json()
        assert not again["already_running"] and again["job_id"] != started["job_id"]


def test_second_trigger_while_running_joins_the_running_job(
    client: Any, as_tenant: Any, dovecot: Any, mail_user: Any, runtime: Any
) -> None:
    import uuid

    account_id = _create(client, as_tenant, dovecot, mail_user)
    with runtime.db.session() as session:  # a worker elsewhere holds the lock
        assert sync_state.start(session, TENANT_A, uuid.UUID(account_id), "other-worker")
    headers = as_tenant(TENANT_A)
    response = client.post(f"/api/sync/imap/{account_id}", headers=headers)
    assert response.status_code == 202
    assert response.get_json()["already_running"] is True
    assert response.get_json()["state"] == "running"


def test_prefer_wait_answers_with_the_final_status(
    client: Any, as_tenant: Any, dovecot: Any, mail_user: Any
) -> None:
    account_id = _create(client, as_tenant, dovecot, mail_user, inbox=4)
    headers = as_tenant(TENANT_A)
    # RFC 7240: several preferences in one field, an unknown one ignored.
    prefer = {**headers, "Prefer": f"respond-async, handling=lenient, wait={WAIT_S}"}
    response = client.post(f"/api/sync/imap/{account_id}", headers=prefer)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Preference-Applied"] == "wait=30"  # capped at MAX_WAIT_S
    done = response.get_json()
    assert done["state"] == "ok" and done["job_id"], done
    assert done["folders"]["INBOX"] == {"done": 4, "total": 4, "percent": 100.0}
    assert done == client.get(f"/api/sync/status/{account_id}", headers=headers).get_json()
    again = client.post(f"/api/sync/imap/{account_id}", headers=prefer).get_json()
    assert again["state"] == "ok" and again["job_id"] != done["job_id"]


def test_prefer_wait_gives_up_with_the_queued_job(
    client: Any, as_tenant: Any, dovecot: Any, mail_user: Any, runtime: Any
) -> None:
    import uuid

    account_id = _create(client, as_tenant, dovecot, mail_user)
    with runtime.db.session() as session:  # a worker elsewhere holds the lock, never ends
        assert sync_state.start(session, TENANT_A, uuid.UUID(account_id), "other-worker")
    prefer = {**as_tenant(TENANT_A), "Prefer": "wait=1"}
    response = client.post(f"/api/sync/imap/{account_id}", headers=prefer)
    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "wait=1"
    assert response.get_json()["already_running"] is True
    assert response.get_json()["state"] == "running"
    other = client.post(
        f"/api/sync/imap/{account_id}", headers={**as_tenant(TENANT_B), "Prefer": "wait=1"}
    )
    assert other.status_code == 404


def test_wrong_password_reports_auth_failed(
    client: Any, as_tenant: Any, dovecot: Any, mail_user: Any
) -> None:
    account_id = _create(client, as_tenant, dovecot, mail_user)
    headers = as_tenant(TENANT_A)
    client.put(f"/api/accounts/{account_id}", json={"password": "nope"}, headers=headers)
    client.post(f"/api/sync/imap/{account_id}", headers=headers)
    done = _wait_done(client, headers, account_id)
    assert done["state"] == "auth_failed"
    assert "nope" not in (done["last_error"] or "")
    assert client.get(f"/api/accounts/{account_id}", headers=headers).get_json()["status"] == (
        "auth_failed"
    )


def test_other_tenant_cannot_trigger_or_read(
    client: Any, as_tenant: Any, dovecot: Any, mail_user: Any
) -> None:
    account_id = _create(client, as_tenant, dovecot, mail_user)
    for method, path in (
        ("post", f"/api/sync/imap/{account_id}"),
        ("get", f"/api/sync/status/{account_id}"),
    ):
        response = getattr(client, method)(path, headers=as_tenant(TENANT_B))
        assert response.status_code == 404


def test_feature_flag_off_is_503(sqlite_settings: Any, as_tenant: Any) -> None:
    app = create_app(sqlite_settings(enable_imap_sync=False), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    client = app.test_client()
    created = client.post(
        "/api/accounts",
        json={"email": "x@example.com", "password": "p"},
        headers=as_tenant(TENANT_A),
    ).get_json()
    for method, path in (
        ("post", f"/api/sync/imap/{created['id']}"),
        ("get", f"/api/sync/status/{created['id']}"),
    ):
        response = getattr(client, method)(path, headers=as_tenant(TENANT_A))
        assert response.status_code == 503
        assert response.get_json()["code"] == "feature_disabled"


def test_prefer_wait_is_not_honoured_while_every_waiting_slot_is_taken(
    client: Any, as_tenant: Any, dovecot: Any, mail_user: Any, runtime: Any
) -> None:
    from email_service.api.sync import waiting_slots

    account_id = _create(client, as_tenant, dovecot, mail_user)
    slots = waiting_slots(runtime.settings.gunicorn_threads)
    taken = 0
    while slots.acquire(blocking=False):  # other clients wait on every slot
        taken += 1
    try:
        prefer = {**as_tenant(TENANT_A), "Prefer": "wait=30"}
        response = client.post(f"/api/sync/imap/{account_id}", headers=prefer)
    finally:
        for _ in range(taken):
            slots.release()
    assert taken == max(runtime.settings.gunicorn_threads - 1, 1)
    assert response.status_code == 202, response.get_json()
    assert "Preference-Applied" not in response.headers
    assert response.get_json()["job_id"]
