"""Server-side request forgery: an account may not point the service at internal hosts.

A service instance with an empty ALLOWED_MAIL_HOSTS and a canary TCP listener on
loopback (IPv4 and IPv6): every spelling of a loopback, private, link-local, CGNAT or
metadata address, and names that resolve to loopback, is refused on create and update;
the canary sees 0 connections; the refusal reads the same whether the port is open or
closed. Then the rows are changed in the database behind the API's back: the sync and
the send check again at connect time and refuse, still 0 connections.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.hardening import figures
from tests.hardening.stack import OWN_GROUP, Service
from tests.servers.ports import free_port
from tests.servers.postgres import pg_database, pg_problem
from tests.servers.wait import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, OWN_GROUP]
TENANT = "ssrf-tenant"
# A public address (example.com's): allowed without an allow-list, and never dialled here
# (creating an account does not connect).
PUBLIC = "93.184.216.34"
BLOCKED = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "127.000.000.001",
    "::1",
    "[::1]",
    "::ffff:127.0.0.1",
    "[::ffff:127.0.0.1]",
    "::ffff:7f00:1",
    "0.0.0.0",
    "0",
    "169.254.169.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "fc00::1",
    "fe80::1",
    "224.0.0.1",
    "255.255.255.255",
    "localhost",
    "LOCALHOST",
    "localhost.",
]


def _loopback_names() -> list[str]:
    """Names the system resolver maps to loopback (the machine's own name, via /etc/hosts)."""
    names = []
    for name in {socket.gethostname(), "ip6-localhost", "ip6-loopback"}:
        try:
            infos = socket.getaddrinfo(name, None)
        except OSError:
            continue
        if infos and all(
            i[4][0] in ("127.0.0.1", "::1") or i[4][0].startswith("127.") for i in infos
        ):
            names.append(name)
    return names


class Canary:
    """Counts TCP connections to one port on 127.0.0.1 and ::1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self.sockets = [socket.create_server(("127.0.0.1", port))]
        if socket.has_ipv6:
            with contextlib.suppress(OSError):
                self.sockets.append(socket.create_server(("::1", port), family=socket.AF_INET6))
        for sock in self.sockets:
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def self_test(self) -> None:
        """Connect once per address family: the counter must see it (then forget it)."""
        for sock in self.sockets:
            family, address = sock.family, sock.getsockname()[:2]
            with socket.socket(family) as probe:
                probe.connect(address)
        wait_for(lambda: self.connections == len(self.sockets), "the canary's self-test", 10)
        self.connections = 0

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """A service with no allow-list (embedded jobs), and its database URL."""
    problem = pg_problem()
    if problem:
        figures.skip("ssrf", "internal hosts refused", problem)
    root: Path = tmp_path_factory.mktemp("ssrf")
    with pg_database() as url:
        svc = Service(root, url, ALLOWED_MAIL_HOSTS="", IMAP_TIMEOUT="5", SMTP_TIMEOUT="5")
        try:
            yield svc.start(), url
        finally:
            svc.stop()


def _body(host: str, port: int) -> dict[str, Any]:
    return {
        "email": "victim@example.test",
        "password": "pw",
        "imap_host": host,
        "imap_port": port,
        "imap_security": "none",
        "smtp_host": host,
        "smtp_port": port,
        "smtp_security": "none",
    }


def _problem(response: Any) -> tuple[int, str]:
    body = response.json() if response.content else {}
    return response.status_code, str({k: v for k, v in body.items() if k != "instance"})


def test_internal_hosts_are_refused_without_an_oracle(guarded: tuple[Service, str]) -> None:
    service, _ = guarded
    hosts = BLOCKED + _loopback_names()
    open_port, closed_port = free_port(), free_port()
    canary = Canary(open_port)
    canary.self_test()
    try:
        base = service.call("POST", "/api/accounts", TENANT, json=_body(PUBLIC, 143))
        assert base.status_code == 201, base.text
        url = f"/api/accounts/{base.json()['id']}"
        refused, oracles, answers = 0, [], set()
        for host in hosts:
            seen = []
            for port in (open_port, closed_port):
                created = service.call("POST", "/api/accounts", TENANT, json=_body(host, port))
                changed = service.call(
                    "PUT", url, TENANT, json={"imap_host": host, "imap_port": port}
                )
                seen.append((_problem(created), _problem(changed)))
                refused += created.status_code == 422 and changed.status_code == 422
                answers.add(created.json().get("code"))
            if seen[0] != seen[1]:
                oracles.append(host)
        connections = canary.connections
    finally:
        canary.close()
    total = 2 * len(hosts)
    note = f"{len(hosts)} hosts ({', '.join(hosts)}) x open/closed port, create and update"
    figures.record(
        "ssrf",
        "internal hosts refused with an empty ALLOWED_MAIL_HOSTS",
        f"{refused}/{total}",
        f"{total}/{total}",
        refused == total,
        f"{note}; problem codes {sorted(answers)}",
    )
    figures.zero("ssrf", "connections seen by a canary listener on loopback", connections, note)
    figures.zero(
        "ssrf", "refusals that differ between an open and a closed port", len(oracles), note
    )
    assert refused == total, answers
    assert connections == 0
    assert oracles == []


def test_sync_and_send_check_the_host_again_at_connect_time(
    guarded: tuple[Service, str],
) -> None:
    service, database = guarded
    port = free_port()
    canary = Canary(port)
    canary.self_test()
    swaps = ["127.0.0.1", "localhost", "2130706433", "::1"]
    try:
        refused, outcomes = 0, []
        for host in swaps:
            created = service.call(
                "POST",
                "/api/accounts",
                TENANT,
                json=_body(PUBLIC, 143) | {"email": f"swap-{len(outcomes)}@example.test"},
            )
            assert created.status_code == 201, created.text
            account = created.json()["id"]
            with psycopg.connect(database, autocommit=True) as conn:  # behind the API's back
                conn.execute(
                    "UPDATE email_account SET imap_host = %s, imap_port = %s, smtp_host = %s, "
                    "smtp_port = %s WHERE id = %s",
                    (host, port, host, port, account),
                )
            sync = service.sync(TENANT, account, timeout=60)
            draft = service.call(
                "POST",
                "/api/compose",
                TENANT,
                json={"account_id": account, "to": ["a@example.test"]},
            )
            sent = service.call("POST", f"/api/compose/send/{draft.json()['id']}", TENANT)
            outbox = f"/api/outbox/{sent.json()['id']}"
            final = wait_for(
                lambda url=outbox: _settled(service.call("GET", url, TENANT).json()), "send", 60
            )
            outcomes.append((host, sync["state"], final["state"]))
            refused += sync["state"] == "error" and "ALLOWED_MAIL_HOSTS" in (
                sync["last_error"] or ""
            )
            refused += final["state"] == "failed"
        connections = canary.connections
    finally:
        canary.close()
    figures.record(
        "ssrf",
        "syncs and sends refused after the host was changed in the database",
        f"{refused}/{2 * len(swaps)}",
        f"{2 * len(swaps)}/{2 * len(swaps)}",
        refused == 2 * len(swaps),
        f"(host, sync state, send state): {outcomes}; canary connections {connections}",
    )
    assert connections == 0
    assert refused == 2 * len(swaps), outcomes


def _settled(outbox: dict[str, Any]) -> dict[str, Any] | None:
    return outbox if outbox["state"] in ("failed", "sent", "cancelled") else None
