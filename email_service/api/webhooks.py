"""/api/webhooks: a tenant's webhook endpoints, their secrets and deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from apiflask import APIBlueprint
from flask import url_for
from pydantic import BaseModel, ConfigDict, Field

from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.schemas import JsonUUID, PageQuery, StrictInput
from email_service.services.events import dispatch, webhooks
from email_service.services.events.names import EVENT_TYPES
from email_service.services.events.webhooks import WebhookFields, WebhookPolicy, WebhookRecord

bp = APIBlueprint("webhooks", __name__, url_prefix="/api/webhooks", tag="Webhooks")

Url = Annotated[str, Field(min_length=8, max_length=2048, description="http(s) receiver URL")]
EventTypes = Annotated[
    list[Annotated[str, Field(max_length=40)]],
    Field(
        min_length=1,
        max_length=50,
        description="event names, '<prefix>.*' or '*'; known names: "
        + ", ".join(sorted(EVENT_TYPES)),
    ),
]
Description = Annotated[str, Field(max_length=200)]


class WebhookCreate(StrictInput):
    """A new endpoint."""

    url: Url
    event_types: EventTypes
    account_id: JsonUUID | None = Field(None, description="only this account's events")
    description: Description | None = None


class WebhookUpdate(StrictInput):
    """Fields to change; ``account_id: null`` removes the account filter."""

    url: Url | None = None
    event_types: EventTypes | None = None
    account_id: JsonUUID | None = None
    description: Description | None = None
    status: Literal["enabled", "disabled"] | None = None


class WebhookOut(BaseModel):
    """An endpoint (its secret is shown only at creation and rotation)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    account_id: uuid.UUID | None
    status: str
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    """A new endpoint and its signing secret (Standard Webhooks ``whsec_...``), shown once."""

    secret: str


class SecretOut(BaseModel):
    """A new signing secret, shown once."""

    secret: str


class WebhookPage(BaseModel):
    """A page of endpoints."""

    items: list[WebhookOut]
    next_cursor: str | None


class Attempt(BaseModel):
    """One attempt: when, the receiver's status (none: no answer), latency, error."""

    at: datetime
    status: int | None
    latency_ms: int
    error: str | None


class DeliveryOut(BaseModel):
    """One event for the endpoint; ``webhook_id`` is its ``webhook-id`` header."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    webhook_id: str
    event_type: str
    state: Literal["pending", "retrying", "succeeded", "failed"]
    attempts: int
    last_status: int | None
    last_latency_ms: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[Attempt]
    payload: dict[str, Any]


class DeliveryPage(BaseModel):
    """A page of deliveries, newest first."""

    items: list[DeliveryOut]
    next_cursor: str | None


def _policy() -> WebhookPolicy:
    return WebhookPolicy.from_entries(runtime().settings.allowed_webhook_hosts)


@bp.post("")
@bp.input(WebhookCreate, arg_name="body")
@bp.output(WebhookCreated, status_code=201)
@bp.doc(responses=[409, 422])
def create_webhook(body: WebhookCreate) -> tuple[WebhookCreated, int, dict[str, str]]:
    """Register an endpoint; the response carries its signing secret, this once."""
    rt = runtime()
    fields = WebhookFields(
        url=body.url,
        event_types=body.event_types,
        account_id=body.account_id,
        description=body.description,
    )
    with rt.db.session() as session:
        record, secret = webhooks.create(session, tenant_id(), fields, rt.vault, _policy())
    out = WebhookCreated(**WebhookOut.model_validate(record).model_dump(), secret=secret)
    return out, 201, {"Location": url_for(".get_webhook", webhook_id=record.id)}


@bp.get("")
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(WebhookPage)
def list_webhooks(query: PageQuery) -> WebhookPage:
    """This tenant's endpoints."""
    with runtime().db.reading() as session:
        page = webhooks.list_webhooks(session, tenant_id(), query.limit, query.cursor)
    return WebhookPage(
        items=[WebhookOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )


@bp.get("/<uuid:webhook_id>")
@bp.output(WebhookOut)
@bp.doc(responses=[404])
def get_webhook(webhook_id: uuid.UUID) -> WebhookRecord:
    """One endpoint."""
    with runtime().db.reading() as session:
        return webhooks.get(session, tenant_id(), webhook_id)


@bp.patch("/<uuid:webhook_id>")
@bp.input(WebhookUpdate, arg_name="body")
@bp.output(WebhookOut)
@bp.doc(responses=[404, 422])
def update_webhook(webhook_id: uuid.UUID, body: WebhookUpdate) -> WebhookRecord:
    """Change an endpoint; ``status: enabled`` turns a disabled one back on."""
    fields = WebhookFields(
        url=body.url,
        event_types=body.event_types,
        account_id=body.account_id,
        clear_account="account_id" in body.model_fields_set and body.account_id is None,
        description=body.description,
        status=body.status,
    )
    with runtime().db.session() as session:
        return webhooks.update(session, tenant_id(), webhook_id, fields, _policy())


@bp.delete("/<uuid:webhook_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[404])
def delete_webhook(webhook_id: uuid.UUID) -> tuple[str, int]:
    """Remove an endpoint and its deliveries."""
    with runtime().db.session() as session:
        webhooks.delete(session, tenant_id(), webhook_id)
    return "", 204


@bp.post("/<uuid:webhook_id>/rotate-secret")
@bp.output(SecretOut)
@bp.doc(responses=[404])
def rotate_secret(webhook_id: uuid.UUID) -> SecretOut:
    """Replace the signing secret; deliveries from now on are signed with the new one."""
    rt = runtime()
    with rt.db.session() as session:
        return SecretOut(secret=webhooks.rotate_secret(session, tenant_id(), webhook_id, rt.vault))


@bp.get("/<uuid:webhook_id>/deliveries")
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(DeliveryPage)
@bp.doc(responses=[404])
def list_deliveries(webhook_id: uuid.UUID, query: PageQuery) -> DeliveryPage:
    """The endpoint's deliveries, newest first, with their attempts."""
    with runtime().db.reading() as session:
        page = webhooks.list_deliveries(session, tenant_id(), webhook_id, query.limit, query.cursor)
    return DeliveryPage(
        items=[DeliveryOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )


@bp.post("/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/resend")
@bp.output(DeliveryOut, status_code=202)
@bp.doc(responses=[404])
def resend_delivery(webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryOut:
    """Deliver an event again (same ``webhook-id``), with a fresh retry window."""
    with runtime().db.session() as session:
        record = dispatch.resend(session, tenant_id(), webhook_id, delivery_id)
    return DeliveryOut.model_validate(record)
