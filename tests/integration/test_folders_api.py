"""Folder management on the real Dovecot: what the API changes, a second IMAP client sees.

Dovecot 2.3 offers SPECIAL-USE and LIST-EXTENDED but not CREATE-SPECIAL-USE, so a role
asked for at creation takes the fallback here (a plain CREATE; the role is what LIST then
says); the command with ``USE`` is checked against a scripted server in
tests/unit/mail/test_imap_folder_commands.py.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from email_service.services.folders.apply import apply_folder_change
from email_service.services.folders.manage import FolderChange, FolderOp
from email_service.services.sync.run import run_sync
from email_service.store.models import Folder
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.wait import wait_for
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login, make_message, quote

WAIT_S = 30
LIST_LINE = re.compile(rb'\((?P<attrs>[^)]*)\) (?:"(?P<d>.)"|NIL) (?P<name>.+)$')


@pytest.fixture
def world(runtime: Any, dovecot: Any, mail_user: Any, client: Any, as_tenant: Any) -> Any:
    account_id = register(runtime, TENANT_A, dovecot, mail_user)
    run_sync(runtime, TENANT_A, account_id, owner="test")
    other_user = dovecot.add_user(f"other-{uuid.uuid4().hex[:8]}@example.test", "pw-other-1")
    other = register(runtime, TENANT_B, dovecot, other_user)
    run_sync(runtime, TENANT_B, other, owner="test")
    return {
        "account_id": account_id,
        "other_account": other,
        "user": mail_user,
        "dovecot": dovecot,
        "a": as_tenant(TENANT_A),
        "b": as_tenant(TENANT_B),
        "runtime": runtime,
    }


def _server(world: Any, command: str = "LIST") -> dict[str, set[str]]:
    """Raw name -> attributes, as a second IMAP client sees them (LIST or LSUB)."""
    with imap_login(world["dovecot"], world["user"]) as imap:
        _, lines = imap._simple_command(command, '""', '"*"'), imap.untagged_responses
        found = lines.get(command, [])
    names: dict[str, set[str]] = {}
    for line in found:
        match = LIST_LINE.match(line) if isinstance(line, bytes) else None
        if match:
            name = match.group("name").decode().strip('"')
            names[name] = set(match.group("attrs").decode().split())
    return names


def _folders(client: Any, world: Any) -> dict[str, Any]:
    url = f"/api/accounts/{world['account_id']}/folders"
    return {f["name"]: f for f in client.get(url, headers=world["a"]).get_json()["items"]}


def _until(predicate: Any, what: str) -> None:
    wait_for(predicate, what, WAIT_S, interval=0.05)


def _create(client: Any, world: Any, **body: Any) -> Any:
    url = f"/api/accounts/{world['account_id']}/folders"
    return client.post(url, json=body, headers=world["a"])


def test_create_nested_non_ascii_seen_by_a_second_client(client: Any, world: Any) -> None:
    since = client.get("/api/changes", headers=world["a"]).get_json()["new_state"]
    response = _create(client, world, name="Projekte/Entwürfe 2026")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["folder"]["name"] == "Projekte/Entwürfe 2026" and body["job_id"]
    assert body["folder"]["delimiter"] == "/" and body["folder"]["subscribed"]
    assert "Projekte/Entwürfe 2026" in _folders(client, world)  # at once, before the job
    changes = client.get("/api/changes", query_string={"since": since}, headers=world["a"])
    assert body["folder"]["id"] in changes.get_json()["changes"]["folder"]["created"]
    raw = "Projekte/Entw&APw-rfe 2026"  # RFC 3501 §5.1.3
    _until(lambda: raw in _server(world), "the folder on the server")
    assert raw in _server(world, "LSUB")
    _until(lambda: "Projekte" in _folders(client, world), "the parent, from LIST")
    created = _folders(client, world)["Projekte/Entwürfe 2026"]
    assert created["id"] == body["folder"]["id"]  # the reconcile kept the row


def test_inside_a_parent_the_delimiter_is_refused(client: Any, world: Any) -> None:
    parent = _folders(client, world)["Archive"]
    refused = _create(client, world, name="a/b", parent_id=parent["id"])
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["field"] == "name"
    nested = _create(client, world, name="2026 ✓", parent_id=parent["id"])
    assert nested.status_code == 202
    assert nested.get_json()["folder"]["name"] == "Archive/2026 ✓"
    _until(lambda: "Archive/2026 &JxM-" in _server(world), "the child on the server")


def test_existing_names_conflict(client: Any, world: Any) -> None:
    for name in ("Sent", "inbox", "INBOX"):
        response = _create(client, world, name=name)
        assert response.status_code == 409, name
    assert _create(client, world, name="Bad*").status_code == 422
    assert _create(client, world, name="a//b").status_code == 422


def test_role_without_create_special_use_falls_back(client: Any, world: Any) -> None:
    response = _create(client, world, name="Old mail", role="archive")
    assert response.status_code == 202
    assert response.get_json()["folder"]["role"] == "archive"  # as asked, until the job
    _until(lambda: "Old mail" in _server(world), "the folder on the server")
    # Dovecot ignores the role (no CREATE-SPECIAL-USE); Archive keeps \Archive.
    _until(lambda: _folders(client, world)["Old mail"]["role"] is None, "the LIST role")
    assert _folders(client, world)["Archive"]["role"] == "archive"
    assert "\\Archive" not in _server(world)["Old mail"]


def test_rename_keeps_messages_and_children(client: Any, world: Any) -> None:
    with imap_login(world["dovecot"], world["user"]) as imap:
        imap.create(quote("Work"))
        imap.create(quote("Work/Sub"))
        append(imap, "Work", make_message(1))
    run_sync(world["runtime"], TENANT_A, world["account_id"], owner="test")
    folder = _folders(client, world)["Work"]
    url = f"/api/accounts/{world['account_id']}/folders/{folder['id']}"
    inside = client.patch(url, json={"name": "Work/Sub/Deeper"}, headers=world["a"])
    assert inside.status_code == 422  # into itself (RFC 9051 §6.3.6 forbids it too)
    response = client.patch(url, json={"name": "Büro"}, headers=world["a"])
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["folder"]["name"] == "Büro"
    shown = _folders(client, world)
    assert "Büro/Sub" in shown and "Work" not in shown  # at once, children too
    _until(lambda: {"B&APw-ro", "B&APw-ro/Sub"} <= set(_server(world)), "the rename")
    assert "Work" not in _server(world)
    run_sync(world["runtime"], TENANT_A, world["account_id"], owner="test")
    messages = client.get(
        "/api/messages", query_string={"folder_id": folder["id"]}, headers=world["a"]
    ).get_json()["items"]
    assert len(messages) == 1 and _folders(client, world)["Büro"]["id"] == folder["id"]


def test_subscribe_and_unsubscribe(client: Any, world: Any) -> None:
    assert _folders(client, world)["Archive"]["subscribed"]  # Dovecot's auto = subscribe
    with imap_login(world["dovecot"], world["user"]) as imap:
        imap.create(quote("Later"))  # not subscribed
    run_sync(world["runtime"], TENANT_A, world["account_id"], owner="test")
    later = _folders(client, world)["Later"]
    assert not later["subscribed"]  # from LIST RETURN (SUBSCRIBED)
    url = f"/api/accounts/{world['account_id']}/folders/{later['id']}"
    response = client.patch(url, json={"subscribed": True}, headers=world["a"])
    assert response.status_code == 202
    assert response.get_json()["folder"]["subscribed"]
    _until(lambda: "Later" in _server(world, "LSUB"), "SUBSCRIBE")
    client.patch(url, json={"subscribed": False}, headers=world["a"])
    _until(lambda: "Later" not in _server(world, "LSUB"), "UNSUBSCRIBE")
    _until(lambda: not _folders(client, world)["Later"]["subscribed"], "the LIST state")


def test_delete_empties_the_folder_and_its_children(client: Any, world: Any) -> None:
    with imap_login(world["dovecot"], world["user"]) as imap:
        imap.create(quote("Old"))
        imap.create(quote("Old/Older"))
        append(imap, "Old", make_message(1))
        append(imap, "Old/Older", make_message(2))
    run_sync(world["runtime"], TENANT_A, world["account_id"], owner="test")
    folder = _folders(client, world)["Old"]
    url = f"/api/accounts/{world['account_id']}/folders/{folder['id']}"
    response = client.delete(url, headers=world["a"])
    assert response.status_code == 202 and response.get_json()["job_id"]
    shown = _folders(client, world)
    assert "Old" not in shown and "Old/Older" not in shown  # at once
    _until(lambda: not {"Old", "Old/Older"} & set(_server(world)), "DELETE on the server")
    listed = client.get(
        "/api/messages", query_string={"folder_id": folder["id"]}, headers=world["a"]
    )
    assert listed.get_json()["items"] == []


def test_inbox_and_role_folders_are_protected(client: Any, world: Any) -> None:
    shown = _folders(client, world)
    base = f"/api/accounts/{world['account_id']}/folders"
    inbox, trash, sent = shown["INBOX"], shown["Trash"], shown["Sent"]
    assert client.delete(f"{base}/{inbox['id']}?force=true", headers=world["a"]).status_code == 422
    rename_inbox = client.patch(
        f"{base}/{inbox['id']}", json={"name": "Other", "force": True}, headers=world["a"]
    )
    assert rename_inbox.status_code == 422
    assert client.delete(f"{base}/{trash['id']}", headers=world["a"]).status_code == 422
    rename_sent = client.patch(f"{base}/{sent['id']}", json={"name": "Out"}, headers=world["a"])
    assert (
        rename_sent.status_code == 422 and rename_sent.get_json()["errors"][0]["field"] == "force"
    )
    assert "Trash" in _folders(client, world) and "Sent" in _folders(client, world)
    forced = client.patch(
        f"{base}/{sent['id']}", json={"name": "Out", "force": True}, headers=world["a"]
    )
    assert forced.status_code == 202
    _until(lambda: "Out" in _server(world), "the forced rename")


def test_another_tenant_gets_404(client: Any, world: Any) -> None:
    folder = _folders(client, world)["Archive"]
    base = f"/api/accounts/{world['account_id']}/folders"
    b = world["b"]
    assert client.post(base, json={"name": "X"}, headers=b).status_code == 404
    assert client.patch(f"{base}/{folder['id']}", json={"name": "X"}, headers=b).status_code == 404
    assert client.delete(f"{base}/{folder['id']}", headers=b).status_code == 404
    # B's own account with A's folder id: still not found
    own = f"/api/accounts/{world['other_account']}/folders/{folder['id']}"
    assert client.delete(own, headers=b).status_code == 404
    assert "Archive" in _folders(client, world) and "X" not in _server(world)


def test_a_refused_create_leaves_the_store(client: Any, world: Any) -> None:
    response = _create(client, world, name="Q1.2026")  # Maildir++ Dovecot: no '.' in names
    assert response.status_code == 202
    assert "Q1.2026" in _folders(client, world)
    _until(lambda: "Q1.2026" not in _folders(client, world), "the reconcile after NO")
    assert "Q1.2026" not in _server(world)


def test_a_created_folder_keeps_its_id_when_a_sync_dropped_the_row(world: Any) -> None:
    change = FolderChange(FolderOp.CREATE, str(uuid.uuid4()), "Made meanwhile")  # no row
    outcome = apply_folder_change(world["runtime"], TENANT_A, world["account_id"], change.to_json())
    assert outcome["done"] is True
    with world["runtime"].db.session() as session:
        row = session.get(Folder, uuid.UUID(change.folder_id))
        assert row is not None and row.raw_name == "Made meanwhile"
        assert row.tenant_id == TENANT_A and row.account_id == world["account_id"]
