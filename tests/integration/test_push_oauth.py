"""Push for OAuth2 accounts: a watcher (the real Supervisor, on its own event loop) logs in
to the real Dovecot with OAUTHBEARER, its tokens checked by introspection against the
real authorization server, and pushed changes are synced by the in-process runner.

APPEND by another client -> stored; a token expired before
the connection, or before a lost connection comes back -> one refresh; a revoked grant ->
auth_failed, one token request, the watcher lets go; a token the server refuses ->
auth_failed with the server's reason and no token anywhere; a token refresh keeps the
connection, an edit of the tokens (or of a password) restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from email_service.config import Security
from email_service.jobs import wire_queue
from email_service.jobs.queues import EmbeddedQueue
from email_service.services import accounts
from email_service.services.accounts import AccountFields
from email_service.services.oauth import credentials
from email_service.services.oauth import tokens as oauth_tokens
from email_service.services.push import supervisor as supervisor_mod
from email_service.services.push.leases import LocalLeases
from email_service.services.push.pending import AsyncMemoryPending, memory_pending
from email_service.services.push.supervisor import Supervisor
from email_service.services.runtime import Runtime
from email_service.store import migrate, scope
from email_service.store.models import Account, Folder, Message, SyncState
from tests.conftest import TENANT_A, TENANT_B
from tests.integration import oauth_stack
from tests.servers.dovecot import DovecotServer, MailAccount
from tests.servers.oauth_provider import OAuthProvider
from tests.support import aio
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login
from tests.support.proxy import cutting_proxy

pytestmark = [pytest.mark.dovecot]
# Ends a wait in the scenario; never reached when the code is right.
WAIT_S = 60.0
# The whole scenario of one test, however it goes.
SCENARIO_S = 150.0


@pytest.fixture
def runtime(
    make_settings: Any,
    backend: str,
    request: pytest.FixtureRequest,
    oauth_provider: OAuthProvider,
    dovecot: DovecotServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Runtime]:
    """Both backends, a database of this test's own (the watcher watches every account in
    it); the embedded runner syncs; a watcher tick every second that reads the account
    list every time (so a change of the list is seen within a tick)."""
    monkeypatch.setattr(supervisor_mod, "ACCOUNTS_REFRESH_S", 0.5)
    own = request.getfixturevalue("pg_url") if backend == "postgres" else None
    settings = make_settings(
        **oauth_stack.provider_settings(oauth_provider, dovecot, None),
        database_url=own,
        watch_lease_seconds=3,
    )
    runtime = Runtime.build(settings)
    migrate.upgrade(runtime.db.engine)
    wire_queue(runtime)
    assert isinstance(runtime.queue, EmbeddedQueue)
    yield runtime
    runtime.queue.shutdown()
    runtime.db.dispose()


@pytest.fixture
def user(dovecot: DovecotServer) -> MailAccount:
    """A mailbox the service reaches with tokens only (other clients use its password)."""
    return dovecot.add_user(f"push-{secrets.token_hex(5)}@example.test", secrets.token_hex(8))


def _oauth_account(
    runtime: Runtime,
    provider: OAuthProvider,
    dovecot: DovecotServer,
    user: MailAccount,
    port: int | None = None,
) -> tuple[uuid.UUID, str]:
    """An OAuth2 account of TENANT_A with fresh tokens (IMAP on ``port``, Dovecot's by
    default); (id, its access token)."""
    issued = provider.issue(user.email, _client_id(runtime))
    tokens = oauth_tokens.TokenSet(
        issued.access_token,
        datetime.now(UTC) + timedelta(seconds=issued.expires_in),
        issued.refresh_token,
    )
    fields = AccountFields(
        email=user.email,
        oauth=tokens,
        oauth_provider=oauth_stack.PROVIDER,
        imap_host="127.0.0.1",
        imap_port=port or dovecot.imap_port,
        imap_security=Security.STARTTLS,
    )
    with runtime.db.session() as session:
        record = accounts.create_account(session, TENANT_A, fields, runtime.vault, runtime.hosts)
    return record.id, issued.access_token


def _client_id(runtime: Runtime) -> str:
    return runtime.settings.oauth_providers[oauth_stack.PROVIDER].client_id


# ---- reading back (the test's own code crosses tenants: operator scope) ---------------


def _count(runtime: Runtime, account_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(Message).join(Folder)
    query = query.where(Message.account_id == account_id, Folder.raw_name == "INBOX")
    with scope.operator_scope("tests"), runtime.db.session() as session:
        return int(session.scalar(query) or 0)


def _synced(runtime: Runtime, account_id: uuid.UUID) -> bool:
    """The account's last sync has finished well."""
    query = select(SyncState.state).where(SyncState.account_id == account_id)
    with scope.operator_scope("tests"), runtime.db.session() as session:
        return session.scalar(query) == "ok"


def _row(runtime: Runtime, account_id: uuid.UUID) -> tuple[str, str | None]:
    """(status, auth_error) of the account."""
    with scope.operator_scope("tests"), runtime.db.session() as session:
        row = session.get_one(Account, account_id)
        return row.status, row.auth_error


# ---- the watcher on the scenario's event loop -----------------------------------------


async def _watching(
    runtime: Runtime, scenario: Callable[[Supervisor], Awaitable[None]]
) -> Supervisor:
    """Run a Supervisor (no database scope of its own, as in `email-service watch`)
    while ``scenario`` runs; stop it cleanly after."""
    supervisor = Supervisor(runtime, LocalLeases(), AsyncMemoryPending(memory_pending()))
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        await scenario(supervisor)
    finally:
        stop.set()
        await task
    return supervisor


def _run(runtime: Runtime, scenario: Callable[[Supervisor], Awaitable[None]]) -> Supervisor:
    return aio.run(asyncio.wait_for(_watching(runtime, scenario), SCENARIO_S))


async def _until(what: str, check: Callable[[], bool], blocking: bool = False) -> None:
    """Poll ``check`` (on a thread when it touches the database) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not (await asyncio.to_thread(check) if blocking else check()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _in_idle(supervisor: Supervisor, account_id: uuid.UUID) -> bool:
    return str(account_id) in supervisor.stats.connected


async def _ticks(supervisor: Supervisor, count: int) -> None:
    """Let ``count`` more reads of the account list happen."""
    for _ in range(count):
        seen = supervisor._refreshed

        def ticked(seen: float = seen) -> bool:
            return supervisor._refreshed != seen

        await _until("a watcher tick", ticked)


def _append(dovecot: DovecotServer, user: MailAccount, subject: str) -> None:
    with imap_login(dovecot, user) as client:
        append(client, "INBOX", f"Subject: {subject}\r\n\r\nhello\r\n".encode())


# ---- the watcher ----------------------------------------------------------------------


def test_an_oauth2_account_is_watched_and_new_mail_reaches_the_store(
    runtime: Runtime, oauth_provider: OAuthProvider, dovecot: DovecotServer, user: MailAccount
) -> None:
    account_id, _token = _oauth_account(runtime, oauth_provider, dovecot, user)
    other_user = dovecot.add_user(f"pw-{secrets.token_hex(5)}@example.test", "pw-other-123")
    other = register(runtime, TENANT_B, dovecot, other_user)  # a password account beside it

    async def scenario(supervisor: Supervisor) -> None:
        await _until("both in IDLE", lambda: _in_idle(supervisor, account_id))
        await _until("the password one in IDLE", lambda: _in_idle(supervisor, other))
        await asyncio.to_thread(_append, dovecot, user, "pushed")
        await _until("the pushed message", lambda: _count(runtime, account_id) == 1, True)

    _run(runtime, scenario)
    assert _count(runtime, other) == 0
    assert oauth_provider.refreshes(user.email) == 0  # the stored token was current
    assert f"user=<{user.email}>, method=OAUTHBEARER" in dovecot.log_file.read_text()


def test_a_token_expired_before_the_connection_is_refreshed_once(
    runtime: Runtime, oauth_provider: OAuthProvider, dovecot: DovecotServer, user: MailAccount
) -> None:
    account_id, old_token = _oauth_account(runtime, oauth_provider, dovecot, user)
    oauth_provider.expire_access_tokens(user.email)  # the server refuses the old one now
    oauth_stack.age_tokens(runtime, str(account_id))

    async def scenario(supervisor: Supervisor) -> None:
        await _until("IDLE", lambda: _in_idle(supervisor, account_id))
        await asyncio.to_thread(_append, dovecot, user, "after refresh")
        await _until("the pushed message", lambda: _count(runtime, account_id) == 1, True)

    _run(runtime, scenario)
    assert oauth_provider.refreshes(user.email) == 1
    stored = oauth_stack.stored_tokens(runtime, str(account_id))
    assert stored.access_token != old_token and not stored.due(timedelta(0))

    async def reconnect(supervisor: Supervisor) -> None:  # a takeover, with a current token
        await _until("IDLE again", lambda: _in_idle(supervisor, account_id))

    _run(runtime, reconnect)
    assert oauth_provider.refreshes(user.email) == 1
    assert _row(runtime, account_id)[0] == "active"


def test_a_connection_lost_after_the_token_expired_comes_back_with_one_refresh(
    runtime: Runtime, oauth_provider: OAuthProvider, dovecot: DovecotServer, user: MailAccount
) -> None:
    with cutting_proxy("127.0.0.1", dovecot.imap_port, None) as proxy:
        account_id, old_token = _oauth_account(
            runtime, oauth_provider, dovecot, user, port=proxy.port
        )

        def expire() -> None:  # an hour later: the token is dead at the server and due here
            oauth_provider.expire_access_tokens(user.email)
            with scope.operator_scope("tests"):
                oauth_stack.age_tokens(runtime, str(account_id))

        async def scenario(supervisor: Supervisor) -> None:
            await _until("IDLE", lambda: _in_idle(supervisor, account_id))
            await _until("the first sync", lambda: _synced(runtime, account_id), True)
            first = supervisor.watches[account_id][1]
            await asyncio.to_thread(expire)
            proxy.cut_all()
            await _until("the drop", lambda: supervisor.stats.reconnects >= 1)
            await _until("IDLE again", lambda: _in_idle(supervisor, account_id))
            assert supervisor.watches[account_id][1] is first  # reconnected, not restarted
            await asyncio.to_thread(_append, dovecot, user, "after the drop")
            await _until("the pushed message", lambda: _count(runtime, account_id) == 1, True)

        _run(runtime, scenario)
    assert oauth_provider.refreshes(user.email) == 1
    assert oauth_stack.stored_tokens(runtime, str(account_id)).access_token != old_token


def test_a_revoked_grant_fails_the_account_once_and_the_watcher_lets_go(
    runtime: Runtime, oauth_provider: OAuthProvider, dovecot: DovecotServer, user: MailAccount
) -> None:
    account_id, _token = _oauth_account(runtime, oauth_provider, dovecot, user)
    oauth_stack.age_tokens(runtime, str(account_id))
    oauth_provider.revoke_user(user.email)  # the refresh token too

    async def scenario(supervisor: Supervisor) -> None:
        await _until("auth_failed", lambda: _row(runtime, account_id)[0] == "auth_failed", True)
        await _until("let go", lambda: account_id not in supervisor.watches)
        await _ticks(supervisor, 3)
        assert account_id not in supervisor.watches

    supervisor = _run(runtime, scenario)
    assert oauth_provider.refreshes(user.email) == 1
    assert supervisor.stats.idle == 0
    assert "invalid_grant" in (_row(runtime, account_id)[1] or "")


def test_a_refused_token_gives_the_account_the_servers_reason_without_the_token(
    runtime: Runtime,
    oauth_provider: OAuthProvider,
    dovecot: DovecotServer,
    user: MailAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account_id, token = _oauth_account(runtime, oauth_provider, dovecot, user)
    oauth_provider.revoke_user(user.email)  # not yet due: the watcher logs in with it
    caplog.set_level(logging.INFO)

    async def scenario(supervisor: Supervisor) -> None:
        await _until("auth_failed", lambda: _row(runtime, account_id)[0] == "auth_failed", True)
        await _until("let go", lambda: account_id not in supervisor.watches)

    _run(runtime, scenario)
    status, reason = _row(runtime, account_id)
    assert status == "auth_failed"
    assert reason is not None and "token refused: status=" in reason  # the JSON challenge
    refusals = [r for r in caplog.records if r.getMessage() == "push login refused"]
    assert refusals and "token refused" in str(refusals[0].__dict__["error"])
    for record in caplog.records:
        assert token not in record.getMessage() + repr(record.__dict__)
    assert token not in reason
    assert oauth_provider.refreshes(user.email) == 0


def test_a_token_refresh_keeps_the_connection_and_an_edit_restarts_it(
    runtime: Runtime, oauth_provider: OAuthProvider, dovecot: DovecotServer, user: MailAccount
) -> None:
    account_id, _token = _oauth_account(runtime, oauth_provider, dovecot, user)

    def refresh() -> None:  # what a sync does when the token is due
        with scope.operator_scope("tests"):
            oauth_stack.age_tokens(runtime, str(account_id))
        with scope.tenant_scope(TENANT_A):
            oauth_tokens.access_token(runtime, account_id)

    def edit() -> None:  # PUT /api/accounts/{id}/oauth
        issued = oauth_provider.issue(user.email, _client_id(runtime))
        given = credentials.token_set(
            issued.access_token, issued.refresh_token, expires_in=issued.expires_in
        )
        with scope.tenant_scope(TENANT_A), runtime.db.session() as session:
            credentials.replace_tokens(session, TENANT_A, account_id, given, None, runtime.vault)

    async def scenario(supervisor: Supervisor) -> None:
        await _until("IDLE", lambda: _in_idle(supervisor, account_id))
        # the sync the connection queued logs in with the token the refresh below revokes
        # (the test provider rotates): let it finish first
        await _until("the first sync", lambda: _synced(runtime, account_id), True)
        first = supervisor.watches[account_id][1]
        await asyncio.to_thread(refresh)
        assert oauth_provider.refreshes(user.email) == 1  # new tokens on the row
        await _ticks(supervisor, 3)
        assert supervisor.watches[account_id][1] is first
        assert supervisor.stats.reconnects == 0
        await asyncio.to_thread(edit)
        await _until("a new connection", lambda: supervisor.watches[account_id][1] is not first)
        await _until("IDLE again", lambda: _in_idle(supervisor, account_id))

    _run(runtime, scenario)
    assert oauth_provider.refreshes(user.email) == 1


def test_a_password_account_restarts_on_a_new_password_not_on_a_new_name(
    runtime: Runtime, dovecot: DovecotServer, user: MailAccount
) -> None:
    account_id = register(runtime, TENANT_B, dovecot, user)

    def edit(**changes: Any) -> None:  # PATCH /api/accounts/{id}
        with scope.tenant_scope(TENANT_B), runtime.db.session() as session:
            accounts.update_account(
                session,
                TENANT_B,
                account_id,
                AccountFields(**changes),
                runtime.vault,
                runtime.hosts,
            )

    async def scenario(supervisor: Supervisor) -> None:
        await _until("IDLE", lambda: _in_idle(supervisor, account_id))
        first = supervisor.watches[account_id][1]
        await asyncio.to_thread(edit, display_name="Renamed")
        await _ticks(supervisor, 3)
        assert supervisor.watches[account_id][1] is first
        await asyncio.to_thread(edit, password=user.password)  # the same one, given again
        await _until("a new connection", lambda: supervisor.watches[account_id][1] is not first)
        await _until("IDLE again", lambda: _in_idle(supervisor, account_id))

    _run(runtime, scenario)
