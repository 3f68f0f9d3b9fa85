"""Bounces through the real servers: a message to a recipient Dovecot does not know comes
back as Postfix's DSN in the sender's INBOX, is synced, and marks the send; a bounce in
another tenant's mailbox changes nothing of ours.

Alice (tenant A) and Bob (tenant B) are Dovecot users; each tenant registers its own.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from email_service.mail.mime.dsn import Bounce, parse_bounce
from email_service.services.runtime import Runtime
from email_service.services.sync import bounces
from email_service.services.sync.run import run_sync
from email_service.store.models import Change, Outbox
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.wait import wait_for
from tests.support.compose_api import add_account, mail_stack, send, wait_state
from tests.support.mailgen import append, imap_login
from tests.unit.mail.bounce_samples import POSTFIX_HDRS, RFC3464_MULTIPLE

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def stack(
    make_settings: Any, postfix: Any, dovecot: Any, as_tenant: Headers
) -> Iterator[dict[str, Any]]:
    """The app, and Alice (tenant A) and Bob (tenant B) registered with the real servers."""
    with mail_stack(make_settings(mail_ca_file=postfix.ca_file), postfix, dovecot, as_tenant) as s:
        yield s


def sent(api: FlaskClient, headers: dict[str, str], to: list[str]) -> dict[str, Any]:
    """Compose and send; the outbox row once Postfix took it."""
    draft = api.post("/api/compose", headers=headers, json={"to": to, "subject": "hi"})
    assert draft.status_code == 201, draft.get_json()
    queued = send(api, headers, draft.get_json()["id"])
    return dict(wait_state(api, headers, queued["id"], "sent", "failed"))


def outbox(api: FlaskClient, headers: dict[str, str], row: dict[str, Any]) -> dict[str, Any]:
    return dict(api.get(f"/api/outbox/{row['id']}", headers=headers).get_json())


def synced_until(
    runtime: Runtime, tenant: str, account_id: str, done: Callable[[], Any]
) -> dict[str, Any]:
    """Sync the account until ``done`` answers (the bounce may still be on its way)."""

    def attempt() -> Any:
        run_sync(runtime, tenant, uuid.UUID(account_id), owner=uuid.uuid4().hex)
        return done()

    return dict(wait_for(attempt, "the bounce to be synced"))


def bounced_events(runtime: Runtime, outbox_id: str) -> list[str | None]:
    with runtime.db.session() as session:
        rows = session.scalars(
            select(Change.detail).where(Change.type == "outbox", Change.entity_id == outbox_id)
        )
        return [d for d in rows if d == "bounced"]


def dsn_for(dovecot: Any, user: Any, outbox_id: str) -> bytes:
    """The raw report in the user's INBOX that carries this envelope id."""
    with imap_login(dovecot, user) as client:
        client.select("INBOX", readonly=True)
        _typ, data = client.uid("SEARCH", "BODY", f'"Original-Envelope-Id: {outbox_id}"')
        (uid,) = data[0].split()
        _typ, parts = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
        return bytes(parts[0][1])


def test_an_unknown_recipient_bounces_back_and_marks_the_send(
    stack: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, runtime, users, ids = stack["api"], stack["runtime"], stack["users"], stack["ids"]
    a = as_tenant(TENANT_A)
    nobody = f"nobody-{secrets.token_hex(4)}@example.test"
    lost = sent(api, a, [nobody])
    partly = sent(api, a, [f"Gone-{secrets.token_hex(4)}@example.test", users["bob"].email])
    assert lost["state"] == partly["state"] == "sent" and lost["bounces"] == []
    bounced = synced_until(
        runtime,
        TENANT_A,
        ids["alice"],
        lambda: (
            (row := outbox(api, a, lost))["state"] == "bounced"
            and outbox(api, a, partly)["bounces"]
            and row
        ),
    )
    (entry,) = bounced["bounces"]
    assert (entry["recipient"], entry["action"], entry["status"]) == (nobody, "failed", "5.1.1")
    assert "550 5.1.1" in entry["diagnostic"]
    # one of two recipients failed: still sent, the failed one listed as we addressed it
    half = outbox(api, a, partly)
    assert half["state"] == "sent"
    assert [b["recipient"] for b in half["bounces"]] == [partly["recipients"][0]]
    assert bounced_events(runtime, lost["id"]) == ["bounced"]
    assert bounced_events(runtime, partly["id"]) == ["bounced"]
    listed = api.get("/api/outbox?state=bounced", headers=a).get_json()["items"]
    assert [row["id"] for row in listed] == [lost["id"]]
    # Postfix had our DSN parameters: ENVID, ORCPT, RET=HDRS
    report = dsn_for(dovecot, users["alice"], lost["id"])
    assert f"Original-Recipient: rfc822;{nobody}".encode() in report
    assert b"Content-Type: text/rfc822-headers" in report
    # the bounce is an ordinary message of the INBOX as well
    subjects = [m["subject"] for m in api.get("/api/messages", headers=a).get_json()["items"]]
    assert "Undelivered Mail Returned to Sender" in subjects


def forged(row: dict[str, Any]) -> bytes:
    """A Postfix DSN naming ``row`` by envelope id and Message-ID (a fresh bounce's own id)."""
    return (
        POSTFIX_HDRS.replace(b"0b1e5a0c-3c55-4f0e-9d38-2f0f8f5b7a11", row["id"].encode())
        .replace(b"<hdrs.1@example.test>", row["message_id"].encode())
        .replace(b"Gone@Example.test", row["recipients"][0].encode())
        .replace(b"<20261207060320.7A0A720C734", f"<{secrets.token_hex(8)}".encode())
    )


def test_a_bounce_in_another_tenants_mailbox_changes_nothing(
    stack: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, runtime, users, ids = stack["api"], stack["runtime"], stack["users"], stack["ids"]
    a = as_tenant(TENANT_A)
    row = sent(api, a, [users["bob"].email])
    with imap_login(dovecot, users["bob"]) as client:
        append(client, "INBOX", forged(row))
    run_sync(runtime, TENANT_B, uuid.UUID(ids["bob"]), owner=uuid.uuid4().hex)
    untouched = outbox(api, a, row)
    assert (untouched["state"], untouched["bounces"]) == ("sent", [])
    assert bounced_events(runtime, row["id"]) == []
    # the same report in Alice's own mailbox (twice) is hers: recorded once
    with imap_login(dovecot, users["alice"]) as client:
        append(client, "INBOX", forged(row))
        append(client, "INBOX", forged(row))
    run_sync(runtime, TENANT_A, uuid.UUID(ids["alice"]), owner=uuid.uuid4().hex)
    mine = outbox(api, a, row)
    assert mine["state"] == "bounced" and len(mine["bounces"]) == 1
    assert bounced_events(runtime, row["id"]) == ["bounced"]


def test_a_delay_then_a_failure_of_every_recipient(app: Any, as_tenant: Headers) -> None:
    """RFC 3464's report about three recipients, on a send to two of them, after a delay
    report about one: the delay is a plain update; the failures (matched by
    Original-Recipient, in any case) of both bounce it."""
    runtime: Runtime = app.extensions["email_service"]
    api = app.test_client()
    account = uuid.UUID(add_account(api, as_tenant(TENANT_A), "owner@cs.utk.edu"))
    add_account(api, as_tenant(TENANT_B), "owner@cs.utk.edu")
    ours = ["Arathib@vnet.ibm.com", "wsnell@sdcc13.ucsd.edu"]
    with runtime.db.session() as session:
        row = Outbox(
            tenant_id=TENANT_A,
            account_id=account,
            draft_id=uuid.uuid4(),
            state="sent",
            message_id="<rfc3464.a3@cs.utk.edu>",
            sender="owner@cs.utk.edu",
            recipients=ours,
            mime_blob_sha256="0" * 64,
        )
        session.add(row)
        session.flush()
        row_id = str(row.id)
    report = parse_bounce(RFC3464_MULTIPLE)
    assert report is not None
    late = replace(report.recipients[2], action="delayed", status="4.4.1")
    delay = replace(report, recipients=(late,))

    def link(tenant: str, bounce: Bounce) -> tuple[int, dict[str, Any]]:
        with runtime.db.session() as session:
            linked = bounces.link_bounces(session, tenant, [bounce])
        return linked, api.get(f"/api/outbox/{row_id}", headers=as_tenant(TENANT_A)).get_json()

    linked, item = link(TENANT_A, delay)
    assert linked == 1 and item["state"] == "sent" and len(item["bounces"]) == 1
    assert link(TENANT_A, delay)[0] == 0  # the same report again
    assert link(TENANT_B, report)[0] == 0  # another tenant's: not found
    linked, item = link(TENANT_A, report)
    assert linked == 1 and item["state"] == "bounced"
    assert sorted((b["recipient"], b["action"], b["status"]) for b in item["bounces"]) == [
        ("Arathib@vnet.ibm.com", "failed", "5.0.0"),
        ("johnh@hpnjld.njd.hp.com", "delayed", "4.0.0"),  # not ours: listed as reported
        ("wsnell@sdcc13.ucsd.edu", "delayed", "4.4.1"),
        ("wsnell@sdcc13.ucsd.edu", "failed", "5.0.0"),
    ]
    with runtime.db.session() as session:
        details = session.scalars(
            select(Change.detail).where(Change.type == "outbox", Change.entity_id == row_id)
        ).all()
    assert details == [None, "bounced"]
