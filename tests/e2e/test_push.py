"""Push end to end: Dovecot, a private Redis, PostgreSQL, a Celery worker and
``email-service watch`` processes. Nobody triggers a sync: every change below reaches the
store because the server told a watcher, which queued a folder sync."""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TENANT_A, TENANT_B
from tests.e2e.push_support import PushStack, message, wait_for
from tests.servers.dovecot import DovecotServer
from tests.servers.fixtures import MAIL_DOMAIN, server_root
from tests.support.mailgen import append, imap_login

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.xdist_group("push"),
]
LEASE_S = 3  # short leases: the takeover test waits one lease, not thirty seconds


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, redis_server: Any) -> Any:
    push = PushStack(tmp_path, pg_url, redis_server.url, WATCH_LEASE_SECONDS=str(LEASE_S))
    yield push
    push.close()


def _user(dovecot: Any) -> Any:
    return dovecot.add_user(f"push-{uuid.uuid4().hex[:10]}@{MAIL_DOMAIN}", "secret-pw-123")


def _spread(stack: Any, accounts: int, holders: int) -> dict[str, str] | None:
    """The leases, once ``accounts`` are held by exactly ``holders`` watchers."""
    held: dict[str, str] = stack.holders()
    return held if len(held) == accounts and len(set(held.values())) == holders else None


def test_changes_by_another_client_reach_the_store_unasked(stack: Any, dovecot: Any) -> None:
    user, other_tenant_user = _user(dovecot), _user(dovecot)
    with imap_login(dovecot, user) as client:
        client.create("Projects")
    account = stack.add_account(TENANT_A, dovecot, user)
    other = stack.add_account(TENANT_B, dovecot, other_tenant_user)
    stack.worker()
    watcher = stack.watcher()
    wait_for(lambda: stack.metric(watcher, "imap_push_idle_connections") == 2, "two IDLEs")
    with imap_login(dovecot, user) as client:
        append(client, "INBOX", message("pushed to inbox"))
        wait_for(lambda: stack.count(account, "pushed to inbox", "INBOX"), "INBOX append")
        append(client, "Projects", message("pushed to projects"))
        wait_for(lambda: stack.count(account, "pushed to projects", "Projects"), "folder append")
        client.select("INBOX")
        client.uid("STORE", "1:*", "+FLAGS", "(\\Flagged)")
        wait_for(lambda: "\\Flagged" in stack.flags(account, "pushed to inbox"), "flag change")
        client.select("Projects")
        client.store("1:*", "+FLAGS", "(\\Deleted)")
        client.expunge()
        wait_for(lambda: not stack.count(account, "pushed to projects"), "expunge")
    assert stack.count(account, "pushed to inbox") == 1  # still there, once
    assert stack.count(other) == 0  # tenant B's account saw none of tenant A's mail
    assert stack.metric(watcher, "imap_push_watched_accounts") == 2


def test_a_watcher_killed_hard_hands_its_accounts_over(stack: Any, dovecot: Any) -> None:
    users = [_user(dovecot) for _ in range(4)]
    accounts = [stack.add_account(TENANT_A, dovecot, u) for u in users]
    stack.worker()
    first = stack.watcher()
    second = stack.watcher()
    held = wait_for(lambda: _spread(stack, 4, 2), "both watchers to hold a fair share")
    assert sorted(list(held.values()).count(v) for v in set(held.values())) == [2, 2]
    wait_for(lambda: stack.metric(first, "imap_push_idle_connections") == 2, "first's IDLEs")
    stack.kill9(first)
    survivor = wait_for(lambda: _spread(stack, 4, 1), "the survivor to take every account")
    survivor_id = next(iter(survivor.values()))
    moved = [a for a in accounts if held[str(a)] != survivor_id]
    assert len(moved) == 2  # the dead watcher's accounts, now the survivor's
    wait_for(lambda: stack.metric(second, "imap_push_idle_connections") == 4, "four IDLEs")
    for account, user in zip(accounts, users, strict=True):
        if account in moved:
            with imap_login(dovecot, user) as client:
                append(client, "INBOX", message(f"after takeover {account}"))
    for account in moved:
        wait_for(partial(stack.count, account, f"after takeover {account}"), "mail after takeover")


def test_dovecot_restart_under_idle_loses_nothing(
    stack: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with server_root(tmp_path_factory, "dovecot-restart") as root:
        own = DovecotServer(root)  # restarted by this test: not the session's server
        own.start()
        try:
            user = _user(own)
            account = stack.add_account(TENANT_A, own, user)
            stack.worker()
            watcher = stack.watcher()
            wait_for(lambda: stack.metric(watcher, "imap_push_idle_connections") == 1, "IDLE")
            with imap_login(own, user) as client:
                append(client, "INBOX", message("before restart"))
            wait_for(lambda: stack.count(account, "before restart"), "mail before restart")
            own.stop()
            wait_for(lambda: stack.metric(watcher, "imap_push_idle_connections") == 0, "drop")
            own.start()
            with imap_login(own, user) as client:  # likely before the watcher is back
                append(client, "INBOX", message("while reconnecting"))
            wait_for(lambda: stack.metric(watcher, "imap_push_idle_connections") == 1, "back")
            with imap_login(own, user) as client:
                append(client, "INBOX", message("after restart"))
            for subject in ("while reconnecting", "after restart"):
                wait_for(partial(stack.count, account, subject), subject)
            assert stack.metric(watcher, "imap_push_reconnects_total") >= 1
            assert stack.count(account) == 3
        finally:
            own.stop()
