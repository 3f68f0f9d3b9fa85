"""Unsubscribing from a list the way its message offers (RFC 2369 List-Unsubscribe).

One-click (RFC 8058) when the message has ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
and an https URL: the ``unsubscribe_message`` job POSTs ``List-Unsubscribe=One-Click``
(application/x-www-form-urlencoded, no cookies, no credentials, §3.2) to that URL. The URL's
host goes through the SSRF guard (``security/netguard``; ``ALLOWED_UNSUBSCRIBE_HOSTS`` admits
private ones) when asked and again before the POST; redirects are not followed (a 3xx
answer counts as done: the POST arrived). Otherwise the ``mailto:`` URI: a message to its
address with its subject and body, queued in the outbox from the message's account (the
usual send path: one delivery, retries, a Sent copy).

Either way the message is marked with the keyword ``$Unsubscribed`` once it is done: by the
job after a 2xx/3xx answer, by the send once the request was sent (the outbox row's origin
flag, as ``\\Answered`` for a reply), in the store and on the IMAP server.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy.orm import Session

from email_service.errors import (
    BlockedHostError,
    NotFoundError,
    RemoteTemporaryError,
    ValidationError,
)
from email_service.mail.mime.build import Mailbox
from email_service.mail.mime.list_headers import ONE_CLICK, ClientHeaders, parse_mailto
from email_service.security.netguard import AllowList, check_url
from email_service.services import gateways, headers, writeback
from email_service.services.outgoing import compose, outbox
from email_service.services.runtime import Runtime
from email_service.store.blobs import BlobStore
from email_service.store.models import Draft, Message, Outbox
from email_service.store.tenancy import tenant_row

UNSUBSCRIBE_TASK = "unsubscribe_message"
# The keyword that records it on the message (an IMAP atom, RFC 9051 §4.1).
UNSUBSCRIBED = "$Unsubscribed"
USER_AGENT = "email-service-unsubscribe"
# Answers worth trying again later: the list's server is busy or down (RFC 9110 §15.6).
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
ALLOW_SETTING = "ALLOWED_UNSUBSCRIBE_HOSTS"

log = logging.getLogger(__name__)


class Method(StrEnum):
    """How a list is left."""

    ONE_CLICK = "one_click"
    MAILTO = "mailto"


@dataclass(frozen=True)
class Requested:
    """What was set in motion: the job (one-click) or the outbox row (mailto)."""

    method: Method
    target: str
    job_id: str | None = None
    outbox_id: uuid.UUID | None = None


def choose(parsed: ClientHeaders, method: Method | None) -> tuple[Method, str]:
    """The method and URI to use: one-click when offered, else mailto (or as asked)."""
    one_click = next((u for u in parsed.unsubscribe_http if u.lower().startswith("https:")), None)
    offered = {
        Method.ONE_CLICK: one_click if parsed.one_click else None,
        Method.MAILTO: next(iter(parsed.unsubscribe_mailto), None),
    }
    for candidate in [method] if method else list(Method):
        target = offered[candidate]
        if target is not None:
            return candidate, target
    wanted = f"{method.value} " if method else ""
    raise ValidationError(f"the message offers no {wanted}unsubscribe request", field="method")


def _check(runtime: Runtime, url: str) -> None:
    allow = AllowList.parse(runtime.settings.allowed_unsubscribe_hosts)
    check_url(url, allow, "unsubscribe", ALLOW_SETTING, https_only=True)


def request_unsubscribe(
    runtime: Runtime, tenant_id: str, message_id: uuid.UUID, method: Method | None = None
) -> Requested:
    """Start unsubscribing the message's list (NotFoundError for another tenant's)."""
    with runtime.db.reading() as session:
        row = tenant_row(session, Message, tenant_id, message_id)
        blobs = gateways.blob_store(runtime, tenant_id)
        parsed = headers.message_headers(session, tenant_id, message_id, blobs).parsed
        account_id = row.account_id
    chosen, target = choose(parsed, method)
    if chosen == Method.MAILTO:
        queued = _send_mailto(runtime, tenant_id, message_id, account_id, target)
        return Requested(chosen, target, outbox_id=queued)
    _check(runtime, target)
    job_id = uuid.uuid4().hex
    assert runtime.queue is not None, "no job queue wired"
    runtime.queue.enqueue(
        UNSUBSCRIBE_TASK, job_id, message_id=str(message_id), tenant_id=tenant_id, url=target
    )
    return Requested(chosen, target, job_id=job_id)


def _send_mailto(
    runtime: Runtime, tenant_id: str, message_id: uuid.UUID, account_id: uuid.UUID, uri: str
) -> uuid.UUID:
    """Queue the mailto: request; asking again gives the same outbox row (idempotency key)."""
    try:
        mailto = parse_mailto(uri)
    except ValueError as exc:
        raise ValidationError(str(exc), field="method") from None
    fields = compose.DraftFields(
        account_id=account_id,
        to=[Mailbox(mailto.to)],
        subject=mailto.subject,
        text=mailto.body,
        given=frozenset({"account_id", "to", "subject", "text"}),
    )

    key = f"unsubscribe:{message_id}"

    def make(session: Session, blobs: BlobStore) -> Outbox:
        record = compose.create_draft(session, tenant_id, fields)
        row = outbox.freeze(session, blobs, session.get_one(Draft, record.id), key)
        row.origin_message_id, row.origin_flag = message_id, UNSUBSCRIBED
        return row

    return outbox.queue_new(runtime, tenant_id, key, make).record.id


def _tls(runtime: Runtime) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca_file = runtime.settings.unsubscribe_ca_file
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def post_one_click(runtime: Runtime, url: str) -> int:
    """The RFC 8058 POST; its status. RemoteTemporaryError for what may pass."""
    _check(runtime, url)  # again: the name may resolve elsewhere by now
    timeout = runtime.settings.unsubscribe_timeout_seconds
    request_headers = {
        "content-type": "application/x-www-form-urlencoded",
        "user-agent": USER_AGENT,
    }
    try:
        with httpx.Client(
            timeout=timeout, follow_redirects=False, verify=_tls(runtime), trust_env=False
        ) as client:
            status = client.post(url, content=ONE_CLICK, headers=request_headers).status_code
    except httpx.HTTPError as exc:
        raise RemoteTemporaryError(f"one-click unsubscribe: {type(exc).__name__}") from None
    if status in RETRY_STATUSES:
        raise RemoteTemporaryError(f"one-click unsubscribe answered HTTP {status}")
    return status


def one_click(runtime: Runtime, tenant_id: str, message_id: uuid.UUID, url: str) -> dict[str, Any]:
    """The job: POST, and on a 2xx/3xx answer mark the message ``$Unsubscribed``."""
    extra: dict[str, Any] = {"message_id": str(message_id), "tenant_id": tenant_id}
    try:
        status = post_one_click(runtime, url)
    except (BlockedHostError, ValidationError) as exc:  # the host moved to a private address
        log.warning("one-click unsubscribe refused: %s", exc.message, extra=extra)
        return {"done": False, "error": exc.message}
    done = 200 <= status < 400
    log.info(
        "one-click unsubscribe %s", "done" if done else "refused", extra=extra | {"status": status}
    )
    if done:
        with suppress(NotFoundError):  # a message deleted meanwhile has nothing to mark
            writeback.request_change(
                runtime,
                tenant_id,
                [message_id],
                flags={},
                add_keywords=[UNSUBSCRIBED],
                remove_keywords=[],
            )
    return {"done": done, "status": status}
