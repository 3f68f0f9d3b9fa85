"""Compose and send through the real Postfix (submission: STARTTLS + AUTH against Dovecot)
into the real Dovecot, on both backends: delivered once, one copy in Sent, threads kept.

Alice (tenant A) and Bob (tenant B) are Dovecot users; each tenant registers its own.
"""

from __future__ import annotations

import email
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from email import policy
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from email_service.services.runtime import Runtime
from email_service.services.sync.run import run_sync
from email_service.store import change_log
from email_service.store.models import Folder, Message
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.wait import wait_for
from tests.support.compose_api import (
    add_account,
    delivered,
    find,
    mail_stack,
    running_app,
    send,
    wait_sent_copy,
    wait_state,
)
from tests.support.mailgen import imap_login, quote
from tests.support.smtp_seam import smtp_seam

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def stack(
    make_settings: Any, postfix: Any, dovecot: Any, as_tenant: Headers
) -> Iterator[dict[str, Any]]:
    """The app, and Alice (tenant A) and Bob (tenant B) registered with the real servers."""
    with mail_stack(make_settings(mail_ca_file=postfix.ca_file), postfix, dovecot, as_tenant) as s:
        yield s


def flags(dovecot: Any, user: Any, folder: str, message_id: str) -> str:
    with imap_login(dovecot, user) as client:
        client.select(quote(folder), readonly=True)
        _typ, data = client.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
        _typ, parts = client.uid("FETCH", data[0].split()[0].decode(), "(FLAGS)")
        return bytes(parts[0]).decode()


def mail(api: FlaskClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """Compose, send, wait until sent and its Sent copy is settled."""
    draft = api.post("/api/compose", headers=headers, json=body)
    assert draft.status_code == 201, draft.get_json()
    queued = send(api, headers, draft.get_json()["id"])
    sent = wait_state(api, headers, queued["id"], "sent", "failed", "needs_reconciliation")
    assert sent["state"] == "sent", sent
    return dict(wait_sent_copy(api, headers, sent["id"]))


def outbox_changes(runtime: Runtime, outbox_id: str) -> list[tuple[str, str | None]]:
    """(op, detail) of the change-log rows of one outbox item, in order."""
    with runtime.db.session() as session:
        rows = change_log.read(session, TENANT_A, 0, 10_000)
    return [(r.op, r.detail) for r in rows if r.type == "outbox" and r.entity_id == outbox_id]


def sync(runtime: Runtime, tenant: str, account_id: str) -> None:
    run_sync(runtime, tenant, uuid.UUID(account_id), owner=uuid.uuid4().hex)


def stored(runtime: Runtime, account_id: str, message_id: str) -> list[tuple[str, Message]]:
    with runtime.db.session() as session:
        rows = session.execute(
            select(Folder.role, Message)
            .join(Folder, Folder.id == Message.folder_id)
            .where(Message.account_id == uuid.UUID(account_id), Message.message_id == message_id)
        ).all()
    return [(role, row) for role, row in rows]


def test_sent_through_postfix_arrives_once_and_is_in_sent_once(
    stack: dict[str, Any], dovecot: Any, postfix: Any, as_tenant: Headers
) -> None:
    api, runtime, users, ids = stack["api"], stack["runtime"], stack["users"], stack["ids"]
    alice, bob = users["alice"], users["bob"]
    body = {
        "to": [{"email": bob.email, "name": "Bob Ünïcode"}],
        "subject": "Grüße from the outbox ✓",
        "body": "Hello Bob,\n.a line with a leading dot\n",
        "html": "<p>Hello <b>Bob</b></p>",
    }
    sent = mail(api, as_tenant(TENANT_A), body)
    assert sent["sent_copy"] == "appended" and sent["attempts"] == 1
    assert sent["last_smtp_code"] == 250 and "queued" in sent["last_smtp_reply"].lower()
    # The 250 is written and announced at once; the Sent copy's outcome follows it.
    assert outbox_changes(runtime, sent["id"]) == [
        ("created", None),
        ("updated", None),  # claimed: sending, one attempt
        ("updated", "sent"),  # the server's 250, not held back by the Sent copy
        ("updated", None),  # the Sent copy's outcome
    ]
    mid = sent["message_id"]
    assert re.fullmatch(r"<[^@]+@example\.test>", mid)
    inbox = delivered(dovecot, bob, mid)
    assert len(inbox) == 1
    got = email.message_from_bytes(inbox[0], policy=policy.default)
    assert got["Subject"] == "Grüße from the outbox ✓"
    assert got["From"].addresses[0].addr_spec == alice.email
    assert got["From"].addresses[0].display_name == "Alice"
    assert got.get_body(("plain",)).get_content().splitlines()[1] == ".a line with a leading dot"
    assert len(find(dovecot, alice, "Sent", mid)) == 1
    assert find(dovecot, alice, "INBOX", mid) == []
    # the next syncs show it once in Bob's INBOX and once in Alice's Sent
    sync(runtime, TENANT_A, ids["alice"])
    sync(runtime, TENANT_B, ids["bob"])
    assert [role for role, _row in stored(runtime, ids["alice"], mid)] == ["sent"]
    assert [role for role, _row in stored(runtime, ids["bob"], mid)] == ["inbox"]
    wait_for(postfix.queue_is_empty, "the Postfix queue to drain")


def test_reply_and_forward_keep_the_thread_and_flag_the_original(
    stack: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, runtime, users, ids = stack["api"], stack["runtime"], stack["users"], stack["ids"]
    alice, bob = users["alice"], users["bob"]
    first = mail(api, as_tenant(TENANT_A), {"to": [bob.email], "subject": "Plan", "body": "?"})
    root = first["message_id"]
    delivered(dovecot, bob, root)
    sync(runtime, TENANT_B, ids["bob"])
    ((_role, original),) = stored(runtime, ids["bob"], root)
    # Tenant A cannot reply to Bob's copy: it is not theirs
    foreign = api.post(
        "/api/compose", headers=as_tenant(TENANT_A), json={"in_reply_to": str(original.id)}
    )
    assert foreign.status_code == 404
    reply_draft = api.post(
        "/api/compose",
        headers=as_tenant(TENANT_B),
        json={"in_reply_to": str(original.id), "body": "OK"},
    ).get_json()
    assert reply_draft["subject"] == "Re: Plan"
    assert reply_draft["to"] == [{"email": alice.email, "name": "Alice"}]
    assert reply_draft["references"] == [root]
    queued = send(api, as_tenant(TENANT_B), reply_draft["id"])
    reply = wait_state(api, as_tenant(TENANT_B), queued["id"], "sent")
    (raw,) = delivered(dovecot, alice, reply["message_id"])
    answer = email.message_from_bytes(raw, policy=policy.default)
    assert answer["In-Reply-To"] == root and answer["References"] == root
    assert answer["Subject"] == "Re: Plan"
    wait_for(lambda: "\\Answered" in flags(dovecot, bob, "INBOX", root), "\\Answered")
    detail = api.get(f"/api/messages/{original.id}", headers=as_tenant(TENANT_B)).get_json()
    assert detail["answered"] is True
    # forward the original to Alice as an attachment
    forward = mail(
        api,
        as_tenant(TENANT_B),
        {"forward_of": str(original.id), "to": [alice.email], "body": "FYI"},
    )
    assert forward["subject"] == "Fwd: Plan"
    (raw,) = delivered(dovecot, alice, forward["message_id"])
    parts = list(email.message_from_bytes(raw, policy=policy.default).walk())
    attached = [p for p in parts if p.get_content_type() == "message/rfc822"]
    assert len(attached) == 1 and root.encode() in attached[0].as_bytes()
    wait_for(lambda: "$Forwarded" in flags(dovecot, bob, "INBOX", root), "$Forwarded")
    # one copy of each in Bob's Sent
    assert len(find(dovecot, bob, "Sent", reply["message_id"])) == 1
    assert len(find(dovecot, bob, "Sent", forward["message_id"])) == 1


def test_wrong_password_fails_without_retrying(
    make_settings: Any, postfix: Any, dovecot: Any, as_tenant: Headers
) -> None:
    user = dovecot.add_user(f"carol-{secrets.token_hex(4)}@example.test", "right")
    with running_app(make_settings(mail_ca_file=postfix.ca_file)) as (api, _runtime):
        add_account(
            api,
            as_tenant(TENANT_A),
            user.email,
            password="wrong",
            smtp_port=postfix.submission_port,
            smtp_security="starttls",
            imap_port=dovecot.imap_port,
        )
        add_account(api, as_tenant(TENANT_B), "other@example2.test")
        draft = api.post(
            "/api/compose", headers=as_tenant(TENANT_A), json={"to": [user.email]}
        ).get_json()
        queued = send(api, as_tenant(TENANT_A), draft["id"])
        failed = wait_state(api, as_tenant(TENANT_A), queued["id"], "failed", "sent")
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert failed["last_smtp_code"] == 535


def test_unanswered_end_of_data_is_reconciled_only_within_the_tenant(
    make_settings: Any, postfix: Any, dovecot: Any, as_tenant: Headers
) -> None:
    """The server takes the message and the connection dies before its 250 (a seam that
    relays to the real Postfix, then cuts): never resent; found by Message-ID in the
    recipient's INBOX once the recipient is an account of the same tenant."""
    alice = dovecot.add_user(f"alice-{secrets.token_hex(4)}@example.test", "pw-a")
    bob = dovecot.add_user(f"bob-{secrets.token_hex(4)}@example.test", "pw-b")
    relay = (postfix.host, postfix.smtp_port)
    with (
        smtp_seam(default="drop", relay_to=relay) as seam,
        running_app(make_settings(send_retry_base_seconds=0.05)) as (api, _runtime),
    ):

        def register(tenant: str, user: Any, **servers: Any) -> None:
            add_account(
                api,
                as_tenant(tenant),
                user.email,
                password=user.password,
                imap_port=dovecot.imap_port,
                **servers,
            )

        register(TENANT_A, alice, smtp_port=seam.port)
        register(TENANT_B, bob)  # Bob is known, but to another tenant only

        def unanswered() -> dict[str, Any]:
            draft = api.post("/api/compose", headers=as_tenant(TENANT_A), json={"to": [bob.email]})
            queued = send(api, as_tenant(TENANT_A), draft.get_json()["id"])
            delivered(dovecot, bob, queued["message_id"])  # the server did take it
            return dict(queued)

        first = unanswered()
        stuck = wait_for(
            lambda: (
                "3 checks" in (_outbox(api, as_tenant, first)["last_error"] or "")
                and _outbox(api, as_tenant, first)
            ),
            "reconciliation to give up",
        )
        assert stuck["state"] == "needs_reconciliation"  # tenant B's mailbox was not looked in
        register(TENANT_A, bob)
        second = unanswered()
        found = wait_state(api, as_tenant(TENANT_A), second["id"], "sent")
        assert "found in the recipient" in found["last_error"]
        wait_for(lambda: _outbox(api, as_tenant, second)["sent_copy"] == "appended", "Sent copy")
    assert seam.data_ends == 2  # one transmission each: nothing was resent
    for row in (first, second):
        assert len(find(dovecot, bob, "INBOX", row["message_id"])) == 1
    assert len(find(dovecot, alice, "Sent", second["message_id"])) == 1
    assert find(dovecot, alice, "Sent", first["message_id"]) == []


def _outbox(api: FlaskClient, as_tenant: Headers, row: dict[str, Any]) -> dict[str, Any]:
    return dict(api.get(f"/api/outbox/{row['id']}", headers=as_tenant(TENANT_A)).get_json())
