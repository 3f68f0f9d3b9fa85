"""Webhook deliveries on both backends, to a real HTTP receiver on loopback.

Deliveries run on the app's job runner (threads, as in the embedded default); the
Celery path is covered in tests/e2e/test_celery_webhooks.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from email_service.jobs import event_work
from email_service.store import change_log
from email_service.store.change_log import ChangeType, Op
from email_service.store.models import WebhookDelivery, WebhookEndpoint, utcnow
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.webhook_receiver import Receiver, webhook_receiver

# Seconds before the test gives up waiting for deliveries (a liveness bound, not a timing).
PATIENCE_S = 60.0


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(
        allowed_webhook_hosts=["127.0.0.1"],
        webhook_timeout_seconds=1,
        webhook_retry_base_seconds=0.05,
        webhook_retry_max_seconds=0.2,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def _hook(client: Any, headers: dict[str, str], url: str, types: list[str]) -> tuple[str, str]:
    response = client.post(
        "/api/webhooks", json={"url": url, "event_types": types}, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return body["id"], body["secret"]


def _messages(runtime: Any, tenant: str, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with runtime.db.session() as session:
        for entity in ids:
            change_log.record(session, tenant, None, ChangeType.MESSAGE, entity, Op.CREATED)
    return ids


def _pump(runtime: Any, done: Callable[[], bool]) -> None:
    """Run dispatch ticks until ``done()``; fail after PATIENCE_S."""
    deadline = time.monotonic() + PATIENCE_S
    while not done():
        assert time.monotonic() < deadline, "deliveries did not arrive"
        event_work.dispatch_webhooks(runtime)
        time.sleep(0.05)


def _states(runtime: Any, hook_id: str) -> list[str]:
    """States of an endpoint's deliveries (a receiver has answered before its row settles)."""
    with runtime.db.reading() as session:
        query = select(WebhookDelivery.state).where(
            WebhookDelivery.endpoint_id == uuid.UUID(hook_id)
        )
        return list(session.scalars(query))


def _verified(received: list[Any], secret: str) -> list[dict[str, Any]]:
    """Bodies of the requests, each signature checked as a receiver would."""
    hook = Webhook(secret)
    return [hook.verify(r.body, r.headers) for r in received]


def test_500_then_200_delivers_every_event_once_per_id(
    client: Any, as_tenant: Any, runtime: Any, receiver: Receiver
) -> None:
    a, b = as_tenant(TENANT_A), as_tenant(TENANT_B)
    hook_a, secret_a = _hook(client, a, f"{receiver.url}/flaky", ["message.*"])
    _hook(client, b, f"{receiver.url}/ok", ["*"])
    _hook(client, a, f"{receiver.url}/hang", ["message.created"])
    mine = _messages(runtime, TENANT_A, 6)
    theirs = _messages(runtime, TENANT_B, 2)

    def all_ok() -> bool:
        ok = {json.loads(r.body)["data"]["id"] for r in receiver.on("/flaky") if r.status == 200}
        settled = set(_states(runtime, hook_a)) == {"succeeded"}
        return ok >= set(mine) and len(receiver.on("/ok")) >= 2 and settled

    _pump(runtime, all_ok)
    flaky = receiver.on("/flaky")
    bodies = _verified(flaky, secret_a)
    assert {b["data"]["id"] for b in bodies} == set(mine)  # no event of B's
    assert all(b["type"] == "message.created" for b in bodies)
    by_id: dict[str, set[str]] = {}
    for request, body in zip(flaky, bodies, strict=True):
        by_id.setdefault(request.headers["webhook-id"], set()).add(body["data"]["id"])
    # each event kept its webhook-id over its retries: 6 ids, each naming one event
    assert len(by_id) == 6 and all(len(v) == 1 for v in by_id.values())
    assert {r.status for r in flaky} == {500, 200}
    assert {json.loads(r.body)["data"]["id"] for r in receiver.on("/ok")} == set(theirs)
    listed = client.get(f"/api/webhooks/{hook_a}/deliveries", headers=a).get_json()["items"]
    assert {d["state"] for d in listed} == {"succeeded"}
    assert all(d["attempts"] == 2 for d in listed)
    assert [a["status"] for a in listed[0]["attempt_log"]] == [500, 200]


def test_hanging_receiver_times_out_and_retries(
    client: Any, as_tenant: Any, runtime: Any, receiver: Receiver
) -> None:
    a = as_tenant(TENANT_A)
    hook, _secret = _hook(client, a, f"{receiver.url}/hang", ["message.created"])
    _messages(runtime, TENANT_A, 1)

    def retried() -> bool:
        with runtime.db.reading() as session:
            rows = session.query(WebhookDelivery).all()
        return bool(rows) and rows[0].attempts >= 1

    _pump(runtime, retried)
    (delivery,) = client.get(f"/api/webhooks/{hook}/deliveries", headers=a).get_json()["items"]
    assert delivery["state"] == "retrying" and delivery["last_status"] is None
    assert "Timeout" in delivery["last_error"]


def test_resend_keeps_the_webhook_id(
    client: Any, as_tenant: Any, runtime: Any, receiver: Receiver
) -> None:
    a = as_tenant(TENANT_A)
    hook, secret = _hook(client, a, f"{receiver.url}/ok", ["message.created"])
    _messages(runtime, TENANT_A, 1)
    _pump(runtime, lambda: _states(runtime, hook) == ["succeeded"])
    (delivery,) = client.get(f"/api/webhooks/{hook}/deliveries", headers=a).get_json()["items"]
    assert delivery["state"] == "succeeded"
    foreign = client.post(
        f"/api/webhooks/{hook}/deliveries/{delivery['id']}/resend", headers=as_tenant(TENANT_B)
    )
    assert foreign.status_code == 404
    again = client.post(f"/api/webhooks/{hook}/deliveries/{delivery['id']}/resend", headers=a)
    assert again.status_code == 202 and again.get_json()["webhook_id"] == delivery["webhook_id"]
    _pump(runtime, lambda: _states(runtime, hook) == ["succeeded"] and len(receiver.on("/ok")) == 2)
    first, second = receiver.on("/ok")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["webhook_id"]
    _verified([first, second], secret)


def test_endpoint_failing_for_days_is_disabled_with_an_event(
    client: Any, as_tenant: Any, runtime: Any, receiver: Receiver
) -> None:
    a = as_tenant(TENANT_A)
    hook, _secret = _hook(client, a, f"{receiver.url}/flaky", ["message.created"])
    start = client.get("/api/changes", headers=a).get_json()["new_state"]
    with runtime.db.session() as session:
        session.execute(update(WebhookEndpoint).values(failing_since=utcnow() - timedelta(days=4)))
    _messages(runtime, TENANT_A, 1)
    _pump(
        runtime,
        lambda: client.get(f"/api/webhooks/{hook}", headers=a).get_json()["status"] == "disabled",
    )
    assert (
        "failed since"
        in client.get(f"/api/webhooks/{hook}", headers=a).get_json()["disabled_reason"]
    )
    account_changes = client.get("/api/changes", query_string={"since": start}, headers=a)
    assert account_changes.get_json()["changes"]["account"]["updated"] == [hook]
