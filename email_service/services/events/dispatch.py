"""Webhook deliveries: from the change log to signed POSTs, at least once.

::

    change log ──fan_out──► delivery (pending) ──claim_due──► deliver ──2xx──► succeeded
                                 ▲                               │
                                 └──── retrying (backoff) ◄──────┘ other status, timeout,
                                                                   refused ──► failed after
                                                                   WEBHOOK_MAX_AGE_HOURS

``fan_out`` reads an endpoint's tenant log after its cursor and inserts one delivery per
subscribed event (unique per endpoint and ``seq``), moving the cursor in the same
transaction. A delivery's id is its ``webhook-id``: the same on every attempt and
re-send, so a receiver de-duplicates on it. Requests follow Standard Webhooks
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``: HMAC-SHA256 of
``id.timestamp.body``), go through the SSRF guard every time, follow no redirects and
give up after ``WEBHOOK_TIMEOUT_SECONDS``; only a 2xx counts. Retries back off
exponentially with jitter for about a day; an endpoint whose deliveries have failed for
``WEBHOOK_DISABLE_AFTER_HOURS`` is disabled, which is itself recorded as an account event.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from email_service.config import Settings
from email_service.errors import EmailServiceError
from email_service.observability import metrics
from email_service.security.crypto import Vault
from email_service.services.events import feed
from email_service.services.events.names import event_name, matches
from email_service.services.events.webhooks import (
    DeliveryRecord,
    Status,
    WebhookPolicy,
    delivery_record,
)
from email_service.store import change_log
from email_service.store.change_log import ChangeType, Op
from email_service.store.db import Database, changed
from email_service.store.models import WebhookDelivery, WebhookEndpoint, utcnow
from email_service.store.scope import operator_scope
from email_service.store.tenancy import tenant_row

# Change-log rows an endpoint takes per fan-out: one transaction stays short.
FAN_OUT_BATCH = 500
# Attempts kept per delivery for GET .../deliveries (the newest).
ATTEMPT_LOG_SIZE = 20
# Characters of a receiver's error kept (bodies are not stored at all).
ERROR_CHARS = 300
# A claimed delivery is not claimed again before its attempt can have ended.
LEASE_MARGIN_S = 60.0
USER_AGENT = "email-service-webhooks/1"


class DeliveryState:
    """A delivery's states."""

    PENDING = "pending"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


OPEN_STATES = (DeliveryState.PENDING, DeliveryState.RETRYING)


@dataclass(frozen=True)
class DeliveryConfig:
    """Timing of deliveries (from WEBHOOK_* settings)."""

    timeout_s: float = 10.0
    retry_base_s: float = 5.0
    retry_max_s: float = 3600.0
    max_age: timedelta = timedelta(hours=24)
    disable_after: timedelta = timedelta(hours=72)


@dataclass(frozen=True)
class Outcome:
    """One attempt's result."""

    status: int | None
    latency_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        """Only a 2xx counts as delivered."""
        return self.status is not None and 200 <= self.status < 300


def backoff(attempt: int, config: DeliveryConfig) -> float:
    """Seconds before retry ``attempt`` (1-based): doubling, capped, 50-100 % jitter."""
    nominal = min(config.retry_max_s, config.retry_base_s * 2 ** min(attempt - 1, 30))
    return float(nominal) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


def fan_out(session: Session, endpoint_id: uuid.UUID) -> int:
    """Turn the endpoint's new change-log rows into deliveries; returns how many."""
    endpoint = session.scalar(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.status == Status.ENABLED)
        .with_for_update(skip_locked=True)  # another dispatcher has it: leave it to them
    )
    if endpoint is None:
        return 0
    top = feed.current_state(session, endpoint.tenant_id)
    rows = change_log.read(
        session, endpoint.tenant_id, endpoint.cursor_seq, FAN_OUT_BATCH, endpoint.account_id, top
    )
    made = 0
    now = utcnow()
    for row in rows:
        name = event_name(row.type, row.op, row.detail)
        if not matches(endpoint.event_types, name):
            continue
        session.add(
            WebhookDelivery(
                tenant_id=endpoint.tenant_id,
                endpoint_id=endpoint.id,
                change_seq=row.seq,
                event_type=name,
                payload=_payload(row, name),
                state=DeliveryState.PENDING,
                next_attempt_at=now,
                attempt_log=[],
            )
        )
        made += 1
    # A short batch read everything up to ``top`` (for this filter): the cursor may go there.
    full = len(rows) == FAN_OUT_BATCH
    endpoint.cursor_seq = rows[-1].seq if full else max(endpoint.cursor_seq, top)
    return made


def _payload(row: change_log.ChangeRow, name: str) -> dict[str, Any]:
    return {
        "type": name,
        "timestamp": row.created_at.isoformat(),
        "data": {
            "object": row.type,
            "id": row.entity_id,
            "op": row.op,
            "account_id": str(row.account_id) if row.account_id else None,
            "detail": row.detail,
            "state": feed.encode_state(row.seq),
        },
    }


def fan_out_all(db: Database) -> int:
    """Fan out every enabled endpoint (each in its own transaction); deliveries made."""
    with operator_scope("webhooks: fan out every tenant's changes"):
        return _fan_out_each(db)


def _fan_out_each(db: Database) -> int:
    with db.reading() as session:
        ids = list(
            session.scalars(
                select(WebhookEndpoint.id).where(WebhookEndpoint.status == Status.ENABLED)
            )
        )
    made = 0
    for endpoint_id in ids:
        with db.session() as session:
            made += fan_out(session, endpoint_id)
    return made


def claim_due(db: Database, limit: int, config: DeliveryConfig) -> list[uuid.UUID]:
    """Deliveries due now, each leased to the caller so no other tick queues it again."""
    with operator_scope("webhooks: lease every tenant's due deliveries"):
        return _claim_due(db, limit, config)


def _claim_due(db: Database, limit: int, config: DeliveryConfig) -> list[uuid.UUID]:
    now = utcnow()
    with db.reading() as session:
        ids = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.state.in_(OPEN_STATES),
                    WebhookDelivery.next_attempt_at <= now,
                    or_(
                        WebhookDelivery.lease_expires_at.is_(None),
                        WebhookDelivery.lease_expires_at < now,
                    ),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )
    lease = now + timedelta(seconds=config.timeout_s + LEASE_MARGIN_S)
    claimed = []
    with db.session() as session:
        for delivery_id in ids:
            statement = (
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    or_(
                        WebhookDelivery.lease_expires_at.is_(None),
                        WebhookDelivery.lease_expires_at < now,
                    ),
                )
                .values(lease_expires_at=lease)
            )
            if changed(session, statement):
                claimed.append(delivery_id)
    return claimed


@dataclass(frozen=True)
class _Request:
    url: str
    body: str
    secret: str
    webhook_id: str


def _prepare(db: Database, vault: Vault, delivery_id: uuid.UUID) -> _Request | None:
    with db.reading() as session:
        found = session.execute(
            select(WebhookDelivery, WebhookEndpoint)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.id == delivery_id)
        ).first()
    if found is None:
        return None
    delivery, endpoint = found
    if delivery.state not in OPEN_STATES or endpoint.status != Status.ENABLED:
        return None
    return _Request(
        url=endpoint.url,
        body=json.dumps(delivery.payload, separators=(",", ":")),
        secret=vault.decrypt(endpoint.secret_ciphertext),
        webhook_id=f"msg_{delivery.id.hex}",
    )


def post(request: _Request, policy: WebhookPolicy, timeout_s: float) -> Outcome:
    """One signed POST; never raises for the receiver's faults."""
    started = time.monotonic()
    try:
        policy.check(request.url)  # again: the name may resolve elsewhere by now
        now = utcnow()
        signature = Webhook(request.secret).sign(request.webhook_id, now, request.body)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": request.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            response = client.post(request.url, content=request.body, headers=headers)
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return Outcome(response.status_code, _ms(started), error)
    except EmailServiceError as exc:
        return Outcome(None, _ms(started), exc.message[:ERROR_CHARS])
    except httpx.HTTPError as exc:
        return Outcome(None, _ms(started), f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def deliver(
    db: Database,
    vault: Vault,
    policy: WebhookPolicy,
    delivery_id: uuid.UUID,
    config: DeliveryConfig,
) -> str | None:
    """Attempt one delivery now; returns its new state (None: nothing to do)."""
    with operator_scope("webhooks: one delivery, by id"):
        return _deliver(db, vault, policy, delivery_id, config)


def _deliver(
    db: Database,
    vault: Vault,
    policy: WebhookPolicy,
    delivery_id: uuid.UUID,
    config: DeliveryConfig,
) -> str | None:
    request = _prepare(db, vault, delivery_id)
    if request is None:
        return None
    outcome = post(request, policy, config.timeout_s)
    with db.session() as session:
        return _settle(session, delivery_id, outcome, config)


def _settle(
    session: Session, delivery_id: uuid.UUID, outcome: Outcome, config: DeliveryConfig
) -> str | None:
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.state not in OPEN_STATES:
        return None
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
    assert endpoint is not None
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status, delivery.last_latency_ms = outcome.status, outcome.latency_ms
    delivery.last_error = outcome.error
    entry = {"at": now.isoformat(), "status": outcome.status, "latency_ms": outcome.latency_ms}
    delivery.attempt_log = [*delivery.attempt_log, {**entry, "error": outcome.error}][
        -ATTEMPT_LOG_SIZE:
    ]
    delivery.lease_expires_at = None
    if outcome.ok:
        delivery.state, delivery.delivered_at = DeliveryState.SUCCEEDED, now
        endpoint.failing_since = None
        metrics.observe_webhook("succeeded", outcome.latency_ms / 1000, _lag(delivery, now))
        return delivery.state
    endpoint.failing_since = endpoint.failing_since or now
    if now - delivery.created_at >= config.max_age:
        delivery.state = DeliveryState.FAILED
    else:
        delivery.state = DeliveryState.RETRYING
        delivery.next_attempt_at = now + timedelta(seconds=backoff(delivery.attempts, config))
    metrics.observe_webhook(delivery.state, outcome.latency_ms / 1000, None)
    if now - endpoint.failing_since >= config.disable_after:
        _disable(session, endpoint)
    return delivery.state


def _lag(delivery: WebhookDelivery, now: datetime) -> float | None:
    at = delivery.payload.get("timestamp")
    return (now - datetime.fromisoformat(at)).total_seconds() if isinstance(at, str) else None


def _disable(session: Session, endpoint: WebhookEndpoint) -> None:
    endpoint.status = Status.DISABLED
    endpoint.disabled_reason = "deliveries failed since " + (
        endpoint.failing_since.isoformat() if endpoint.failing_since else "?"
    )
    target = endpoint.account_id or endpoint.id
    change_log.record(
        session,
        endpoint.tenant_id,
        endpoint.account_id,
        ChangeType.ACCOUNT,
        target,
        Op.UPDATED,
        detail="webhook_disabled",
    )


def resend(
    session: Session, tenant_id: str, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> DeliveryRecord:
    """Queue a delivery again, with a fresh retry window; its webhook-id stays the same."""
    same_webhook = WebhookDelivery.endpoint_id == webhook_id
    delivery = tenant_row(
        session, WebhookDelivery, tenant_id, delivery_id, same_webhook, delivery_id=str(delivery_id)
    )
    now = utcnow()
    delivery.state, delivery.next_attempt_at = DeliveryState.PENDING, now
    delivery.lease_expires_at, delivery.created_at = None, now
    session.flush()
    return delivery_record(delivery)


def config_from(settings: Settings) -> DeliveryConfig:
    """Delivery timing from the WEBHOOK_* settings."""
    return DeliveryConfig(
        timeout_s=settings.webhook_timeout_seconds,
        retry_base_s=settings.webhook_retry_base_seconds,
        retry_max_s=settings.webhook_retry_max_seconds,
        max_age=timedelta(hours=settings.webhook_max_age_hours),
        disable_after=timedelta(hours=settings.webhook_disable_after_hours),
    )
