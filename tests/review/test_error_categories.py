"""Finding 11: verify and sync answers name a category, never the socket error, so a caller
cannot tell a closed port from an open one that speaks another protocol (the detail stays
in the log). Two tenants; the other tenant's account is untouched."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.errors import EmailServiceError
from email_service.services.sync.run import run_sync
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.ports import free_ports
from tests.support.compose_api import add_account, running_app

LEAKS = ("refused", "timed out", "errno", "220", "greeting", "127.0.0.1", "ssl", "tls")


@pytest.fixture
def chatty_port() -> Iterator[int]:
    """An open port that answers like an SMTP server (the wrong protocol for IMAP)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"220 internal.example ESMTP Postfix\r\n")
                conn.settimeout(1)
                with suppress(OSError):
                    conn.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def app_client(make_settings: Any) -> Iterator[tuple[FlaskClient, Any]]:
    with ExitStack() as stack:
        yield stack.enter_context(running_app(make_settings()))


def _verify(client: FlaskClient, headers: dict[str, str], account_id: str) -> dict[str, Any]:
    answer = client.post(f"/api/accounts/{account_id}/verify", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


def _sync_error(client: FlaskClient, runtime: Any, headers: dict[str, str], account: str) -> str:
    with pytest.raises(EmailServiceError) as raised:
        run_sync(runtime, TENANT_A, uuid.UUID(account), owner="test")
    assert not any(word in raised.value.message.lower() for word in LEAKS), raised.value.message
    status = client.get(f"/api/sync/status/{account}", headers=headers).get_json()
    return str(status["last_error"])


def test_closed_and_wrong_protocol_ports_look_alike(
    app_client: tuple[FlaskClient, Any], as_tenant: Any, chatty_port: int
) -> None:
    client, runtime = app_client
    headers = as_tenant(TENANT_A)
    (closed,) = free_ports(1)
    ports = {"closed": closed, "open": chatty_port}
    accounts = {
        name: add_account(client, headers, f"{name}@example.test", imap_port=port, smtp_port=port)
        for name, port in ports.items()
    }
    other = add_account(client, as_tenant(TENANT_B), "b@example2.test", imap_port=closed)
    checks = {name: _verify(client, headers, account) for name, account in accounts.items()}
    for check in checks.values():
        for side in ("imap", "smtp"):
            assert check[side]["ok"] is False
            detail = check[side]["detail"].lower()
            assert not any(word in detail for word in LEAKS), detail
            assert str(closed) not in detail and str(chatty_port) not in detail
    assert checks["closed"] == checks["open"]
    errors = {name: _sync_error(client, runtime, headers, a) for name, a in accounts.items()}
    assert errors["closed"] == errors["open"], errors
    assert not any(word in errors["closed"].lower() for word in LEAKS), errors
    assert client.get(f"/api/sync/status/{other}", headers=headers).status_code == 404
