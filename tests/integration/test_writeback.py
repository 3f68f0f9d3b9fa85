"""Write-back: flags, keywords, moves and deletions reach the real Dovecot; a resync agrees."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from email_service.services.sync.run import run_sync
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.wait import wait_for
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login, make_message, status

WAIT_S = 30


@pytest.fixture
def world(runtime: Any, dovecot: Any, mail_user: Any, client: Any, as_tenant: Any) -> Any:
    with imap_login(dovecot, mail_user) as imap:
        for i in range(4):
            append(imap, "INBOX", make_message(i))
    account_id = register(runtime, TENANT_A, dovecot, mail_user)
    run_sync(runtime, TENANT_A, account_id, owner="test")
    headers = as_tenant(TENANT_A)
    folders = {
        f["role"] or f["name"]: f
        for f in client.get(f"/api/accounts/{account_id}/folders", headers=headers).get_json()[
            "items"
        ]
    }
    inbox = client.get(
        "/api/messages", query_string={"folder_id": folders["inbox"]["id"]}, headers=headers
    ).get_json()["items"]
    return {
        "account_id": account_id,
        "folders": folders,
        "inbox": inbox,
        "user": mail_user,
        "dovecot": dovecot,
        "headers": headers,
    }


def _server_flags(world: Any, folder: str) -> dict[int, set[str]]:
    with imap_login(world["dovecot"], world["user"]) as imap:
        imap.select(f'"{folder}"', readonly=True)
        _, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    found = {}
    for line in data:
        if isinstance(line, bytes) and (m := re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)):
            found[int(m.group(1))] = set(m.group(2).decode().split())
    return found


def _until(predicate: Any, what: str) -> None:
    wait_for(predicate, what, WAIT_S, interval=0.05)


def _count(world: Any, folder: str) -> int:
    with imap_login(world["dovecot"], world["user"]) as imap:
        return status(imap, folder)["MESSAGES"]


def test_flags_and_keywords_locally_at_once_then_on_the_server(client: Any, world: Any) -> None:
    first = world["inbox"][0]
    response = client.patch(
        f"/api/messages/{first['id']}",
        headers=world["headers"],
        json={"seen": True, "flagged": True, "add_keywords": ["$Work"]},
    )
    assert response.status_code == 202
    body = response.get_json()
    assert body["items"][0]["seen"] and body["items"][0]["flagged"]
    assert "$Work" in body["items"][0]["flags"] and len(body["job_ids"]) == 1
    _until(
        lambda: (
            {"\\Seen", "\\Flagged", "$Work"}
            <= _server_flags(world, "INBOX").get(_uid(client, world, first["id"]), set())
        ),
        "flags on the server",
    )
    again = client.patch(
        f"/api/messages/{first['id']}",
        headers=world["headers"],
        json={"flagged": False, "remove_keywords": ["$Work"]},
    )
    assert not again.get_json()["items"][0]["flagged"]
    _until(
        lambda: "\\Flagged" not in _server_flags(world, "INBOX")[_uid(client, world, first["id"])],
        "flag cleared on the server",
    )


def _uid(client: Any, world: Any, message_id: str) -> int:
    raw = client.get(f"/api/messages/{message_id}/raw", headers=world["headers"])
    assert raw.status_code == 200
    subject = re.search(rb"Subject: (.*)", raw.data)
    assert subject
    with imap_login(world["dovecot"], world["user"]) as imap:
        imap.select('"INBOX"', readonly=True)
        _, data = imap.uid(
            "SEARCH",
            "HEADER",
            "Message-ID",
            re.search(rb"Message-ID: (<[^>]+>)", raw.data).group(1),
        )  # type: ignore[union-attr]
    return int(data[0].split()[0])


def test_move_keeps_the_row_and_a_resync_agrees(client: Any, world: Any, runtime: Any) -> None:
    moved = world["inbox"][1]
    archive = world["folders"]["archive"]
    response = client.patch(
        f"/api/messages/{moved['id']}", headers=world["headers"], json={"folder_id": archive["id"]}
    )
    assert response.status_code == 202
    _until(lambda: _count(world, "Archive") == 1, "the move on the server")
    _until(
        lambda: (
            client.get(f"/api/messages/{moved['id']}", headers=world["headers"])
            .get_json()
            .get("folder_id")
            == archive["id"]
        ),
        "local re-key",
    )
    report = run_sync(runtime, TENANT_A, world["account_id"], owner="resync")
    assert report.new_messages == 0 and report.deleted == 0  # the store already agreed
    listing = client.get(
        "/api/messages", query_string={"folder_id": archive["id"]}, headers=world["headers"]
    ).get_json()["items"]
    assert [m["id"] for m in listing] == [moved["id"]]
    assert _count(world, "INBOX") == 3


def _folder_counts(client: Any, world: Any, headers: Any = None) -> Any:
    answer = client.get(
        f"/api/accounts/{world['account_id']}/folders", headers=headers or world["headers"]
    )
    if answer.status_code != 200:
        return answer.status_code
    return {
        f["role"] or f["name"]: (f["message_count"], f["unread_count"])
        for f in answer.get_json()["items"]
    }


def test_folder_counts_follow_a_clients_changes_before_any_sync(
    client: Any, world: Any, as_tenant: Any
) -> None:
    assert _folder_counts(client, world)["inbox"] == (4, 4)
    first, second = world["inbox"][0], world["inbox"][1]
    read = {"seen": True}
    client.patch(f"/api/messages/{first['id']}", headers=world["headers"], json=read)
    assert _folder_counts(client, world)["inbox"] == (4, 3)  # at once, not at the next sync
    client.patch(f"/api/messages/{first['id']}", headers=world["headers"], json={"seen": False})
    assert _folder_counts(client, world)["inbox"] == (4, 4)
    archive = world["folders"]["archive"]["id"]
    client.patch(
        f"/api/messages/{second['id']}", headers=world["headers"], json={"folder_id": archive}
    )
    _until(lambda: _folder_counts(client, world)["archive"] == (1, 1), "the move counted")
    assert _folder_counts(client, world)["inbox"] == (3, 3)
    assert _folder_counts(client, world, as_tenant(TENANT_B)) == 404


def test_delete_goes_to_trash_then_expunges(client: Any, world: Any) -> None:
    victim = world["inbox"][2]
    trash = world["folders"]["trash"]
    assert (
        client.delete(f"/api/messages/{victim['id']}", headers=world["headers"]).status_code == 202
    )
    _until(lambda: _count(world, "Trash") == 1 and _count(world, "INBOX") == 3, "to Trash")
    _until(
        lambda: (
            client.get(f"/api/messages/{victim['id']}", headers=world["headers"])
            .get_json()
            .get("folder_id")
            == trash["id"]
        ),
        "local re-key",
    )
    assert (
        client.delete(f"/api/messages/{victim['id']}", headers=world["headers"]).status_code == 202
    )
    _until(lambda: _count(world, "Trash") == 0, "expunged from Trash")
    _until(
        lambda: (
            client.get(f"/api/messages/{victim['id']}", headers=world["headers"]).status_code == 404
        ),
        "row gone",
    )


def test_permanent_delete_and_bulk_flags(client: Any, world: Any) -> None:
    ids = [m["id"] for m in world["inbox"]]
    bulk = client.post(
        "/api/messages/bulk", headers=world["headers"], json={"ids": ids[:3], "seen": True}
    )
    assert bulk.status_code == 202 and all(m["seen"] for m in bulk.get_json()["items"])
    _until(
        lambda: sum("\\Seen" in f for f in _server_flags(world, "INBOX").values()) == 3,
        "bulk flags on the server",
    )
    gone = client.delete(
        f"/api/messages/{ids[3]}", query_string={"permanent": "true"}, headers=world["headers"]
    )
    assert gone.status_code == 202
    _until(lambda: _count(world, "INBOX") == 3 and _count(world, "Trash") == 0, "expunge")


@pytest.mark.parametrize(
    "body",
    [
        {"add_keywords": ["\\Seen"]},
        {"add_keywords": ["bad keyword"]},
        {"seen": "yes"},
        {"folder_id": "not-a-uuid"},
        {"unknown": 1},
    ],
)
def test_bad_changes_are_422(client: Any, world: Any, body: dict[str, Any]) -> None:
    response = client.patch(
        f"/api/messages/{world['inbox'][0]['id']}", headers=world["headers"], json=body
    )
    assert response.status_code == 422


def test_foreign_ids_are_404(client: Any, world: Any, as_tenant: Any) -> None:
    first = world["inbox"][0]
    foreign = client.patch(
        f"/api/messages/{first['id']}", headers=as_tenant(TENANT_B), json={"seen": True}
    )
    assert foreign.status_code == 404
    missing_folder = client.patch(
        f"/api/messages/{first['id']}",
        headers=world["headers"],
        json={"folder_id": str(uuid.uuid4())},
    )
    assert missing_folder.status_code == 404
    bulk = client.post(
        "/api/messages/bulk",
        headers=world["headers"],
        json={"ids": [first["id"], str(uuid.uuid4())], "seen": True},
    )
    assert bulk.status_code == 404
    assert not client.get(f"/api/messages/{first['id']}", headers=world["headers"]).get_json()[
        "seen"
    ]
