"""Fault cases at the SMTP seam (aiosmtpd on loopback), through the API and the embedded
job runner, on both backends: what is delivered, how often, and what the outbox says.

Each test counts deliveries at the server (``seam.delivered``) and ends of DATA it saw.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from email_service.services.outgoing import delivery, reconcile
from email_service.services.runtime import Runtime
from email_service.store.models import Account, Outbox, utcnow
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.wait import wait_for
from tests.support.compose_api import (
    FAST_RETRIES,
    add_account,
    compose,
    running_app,
    send,
    wait_state,
)
from tests.support.smtp_seam import Seam, smtp_seam

Headers = Callable[[str], dict[str, str]]
Setup = tuple[FlaskClient, Runtime, Seam]


@pytest.fixture
def make_setup(make_settings: Any, as_tenant: Headers) -> Iterator[Callable[..., Setup]]:
    """An app and a scripted SMTP server; both tenants have an account sending to it."""
    with ExitStack() as stack:

        def build(script: list[str] | None = None, **settings: Any) -> Setup:
            seam = stack.enter_context(smtp_seam(script=list(script or [])))
            values = {**FAST_RETRIES, **settings}
            api, runtime = stack.enter_context(running_app(make_settings(**values)))
            for tenant, email in ((TENANT_A, "alice@example.test"), (TENANT_B, "bob@e2.test")):
                add_account(api, as_tenant(tenant), email, smtp_port=seam.port)
            return api, runtime, seam

        yield build


def test_421_and_451_then_250_is_delivered_once_after_retries(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, _runtime, seam = make_setup(["421 4.3.2 closing", "451 4.3.0 try later"])
    headers = as_tenant(TENANT_A)
    queued = send(api, headers, compose(api, headers)["id"])
    sent = wait_state(api, headers, queued["id"], "sent", "failed")
    assert sent["state"] == "sent" and sent["attempts"] == 3
    assert sent["last_smtp_code"] == 250 and sent["last_error"] is None
    assert seam.data_ends == 3 and len(seam.delivered) == 1
    assert seam.delivered[0].content.count(b"Message-ID: " + sent["message_id"].encode()) == 1
    assert api.get(f"/api/outbox/{queued['id']}", headers=as_tenant(TENANT_B)).status_code == 404


def test_550_fails_after_one_attempt_and_keeps_the_answer(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, _runtime, seam = make_setup(["550 5.7.1 <recipient@example.com>: policy says no"])
    headers = as_tenant(TENANT_A)
    draft = compose(api, headers)
    queued = send(api, headers, draft["id"])
    failed = wait_state(api, headers, queued["id"], "sent", "failed")
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert failed["last_smtp_code"] == 550
    assert failed["last_smtp_reply"] == "5.7.1 <recipient@example.com>: policy says no"
    assert "550" in failed["last_error"]
    assert seam.data_ends == 1 and seam.delivered == []
    # the draft can be fixed and sent again
    again = api.get(f"/api/compose/drafts/{draft['id']}", headers=headers).get_json()
    assert again["state"] == "editing"
    listed = api.get("/api/outbox?state=failed", headers=headers).get_json()["items"]
    assert [r["id"] for r in listed] == [queued["id"]]
    assert api.get("/api/outbox", headers=as_tenant(TENANT_B)).get_json()["items"] == []


def test_temporary_errors_give_up_after_the_configured_attempts(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, _runtime, seam = make_setup(send_max_attempts=3)
    seam.default = "452 4.3.1 insufficient storage"
    headers = as_tenant(TENANT_A)
    queued = send(api, headers, compose(api, headers)["id"])
    failed = wait_state(api, headers, queued["id"], "failed")
    assert failed["attempts"] == 3 and "gave up after 3 attempts" in failed["last_error"]
    assert failed["last_smtp_code"] == 452
    assert seam.data_ends == 3 and seam.delivered == []


def test_connection_dropped_after_data_is_never_resent(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, runtime, seam = make_setup(["drop"])
    headers = as_tenant(TENANT_A)
    draft = compose(api, headers)
    queued = send(api, headers, draft["id"])
    row = wait_state(api, headers, queued["id"], "needs_reconciliation")
    assert "not resending" in row["last_error"]
    # reconciliation looks a few times (nothing to find here), then waits for a person
    wait_for(
        lambda: "3 checks" in (_row(api, headers, queued["id"])["last_error"] or ""),
        "reconciliation to give up",
    )
    reconcile.send_due(runtime)  # beat, once more: nothing is resent
    delivery.send_email(runtime, TENANT_A, uuid.UUID(draft["id"]))
    assert _row(api, headers, queued["id"])["state"] == "needs_reconciliation"
    assert seam.data_ends == 1 and len(seam.delivered) == 1
    # a person decides: cancel, then send the draft again on purpose
    cancel = api.post(f"/api/outbox/{queued['id']}/cancel", headers=headers)
    assert cancel.get_json()["state"] == "cancelled"
    second = send(api, headers, draft["id"])
    assert second["id"] != queued["id"]
    wait_state(api, headers, second["id"], "sent")
    assert len(seam.delivered) == 2


def _row(api: FlaskClient, headers: dict[str, str], outbox_id: str) -> dict[str, Any]:
    return dict(api.get(f"/api/outbox/{outbox_id}", headers=headers).get_json())


def _scheduled(api: FlaskClient, headers: dict[str, str]) -> tuple[str, str]:
    """A draft queued for 2099: nothing sends it until the test moves its row."""
    draft = compose(api, headers, send_at="2099-01-01T00:00:00Z")
    return draft["id"], send(api, headers, draft["id"])["id"]


def _set(runtime: Runtime, outbox_id: str, **values: Any) -> None:
    with runtime.db.session() as session:
        session.execute(update(Outbox).where(Outbox.id == uuid.UUID(outbox_id)).values(**values))


def test_beat_sends_a_scheduled_message_when_it_is_due(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, runtime, seam = make_setup()
    headers = as_tenant(TENANT_A)
    _draft_id, outbox_id = _scheduled(api, headers)
    assert reconcile.send_due(runtime) == 0
    _set(runtime, outbox_id, next_attempt_at=utcnow() - timedelta(seconds=1))  # time passes
    assert reconcile.send_due(runtime) == 1
    wait_state(api, headers, outbox_id, "sent")
    assert len(seam.delivered) == 1


def test_a_worker_lost_before_the_end_of_data_is_retried_once(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, runtime, seam = make_setup()
    headers = as_tenant(TENANT_A)
    _draft_id, outbox_id = _scheduled(api, headers)
    past = utcnow() - timedelta(seconds=5)
    _set(runtime, outbox_id, state="sending", stage="connecting", lease_owner="dead",
         lease_expires_at=past, attempts=1, next_attempt_at=past)  # fmt: skip
    assert reconcile.send_due(runtime) == 1
    sent = wait_state(api, headers, outbox_id, "sent")
    assert sent["attempts"] == 2 and len(seam.delivered) == 1


def test_a_worker_lost_after_the_end_of_data_is_not_resent(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, runtime, seam = make_setup()
    headers = as_tenant(TENANT_A)
    draft_id, outbox_id = _scheduled(api, headers)
    past = utcnow() - timedelta(seconds=5)
    _set(runtime, outbox_id, state="sending", stage="data_end", lease_owner="dead",
         lease_expires_at=past, attempts=1, next_attempt_at=None)  # fmt: skip
    outcome = delivery.send_email(runtime, TENANT_A, uuid.UUID(draft_id))
    assert outcome.state == "needs_reconciliation"
    row = _row(api, headers, outbox_id)
    assert row["state"] == "needs_reconciliation"
    assert "not found by Message-ID" in row["last_error"]  # looked for it, did not resend
    assert seam.data_ends == 0


def test_a_live_sending_row_is_left_alone(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, runtime, seam = make_setup()
    headers = as_tenant(TENANT_A)
    draft_id, outbox_id = _scheduled(api, headers)
    _set(runtime, outbox_id, state="sending", stage="connecting", lease_owner="alive",
         lease_expires_at=utcnow() + timedelta(minutes=5))  # fmt: skip
    assert delivery.send_email(runtime, TENANT_A, uuid.UUID(draft_id)).state == "sending"
    assert reconcile.send_due(runtime) == 0
    assert api.post(f"/api/outbox/{outbox_id}/cancel", headers=headers).status_code == 409
    assert seam.data_ends == 0


def test_a_slow_worker_whose_row_was_taken_back_stops_before_the_final_dot(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    api, runtime, seam = make_setup()
    headers = as_tenant(TENANT_A)
    draft_id, outbox_id = _scheduled(api, headers)
    _set(runtime, outbox_id, next_attempt_at=utcnow() - timedelta(seconds=1))
    slow = delivery._claim(runtime, TENANT_A, uuid.UUID(draft_id), "slow-worker")
    assert slow is not None
    # its lease runs out; another worker recovers the row and sends it
    _set(runtime, outbox_id, lease_expires_at=utcnow() - timedelta(seconds=1))
    assert delivery.send_email(runtime, TENANT_A, uuid.UUID(draft_id)).state == "sent"
    # the slow one reaches its fence: it must not finish its DATA
    with pytest.raises(delivery.LeaseLostError):
        delivery._fence(runtime, slow[0].id, "slow-worker")
    assert len(seam.delivered) == 1
    assert _row(api, headers, outbox_id)["attempts"] == 2


def test_a_claimed_send_whose_login_cannot_be_read_is_settled_not_left_sending(
    make_setup: Callable[..., Setup], as_tenant: Headers
) -> None:
    """The claim commits before the login is read: a login that cannot be read fails the
    attempt like a refusal over SMTP, rather than leaving the row ``sending`` until its
    lease runs out."""
    api, runtime, seam = make_setup()
    headers = as_tenant(TENANT_A)
    draft_id, outbox_id = _scheduled(api, headers)
    _set(runtime, outbox_id, next_attempt_at=utcnow() - timedelta(seconds=1))
    with runtime.db.session() as session:
        row = session.get_one(Outbox, uuid.UUID(outbox_id))
        session.execute(
            update(Account).where(Account.id == row.account_id).values(password_ciphertext=None)
        )
    outcome = delivery.send_email(runtime, TENANT_A, uuid.UUID(draft_id))
    assert outcome.state == "failed" and "no password" in outcome.detail
    sent = _row(api, headers, outbox_id)
    assert (sent["state"], sent["attempts"]) == ("failed", 1)
    assert seam.delivered == []
