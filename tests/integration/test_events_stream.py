"""GET /api/events on both backends: live changes, resume, heartbeats, tenancy, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from email_service.services.events import feed
from email_service.store.models import Change, utcnow
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.events import events_server, read_events, stream


@pytest.fixture
def events_url(runtime: Any) -> Iterator[str]:
    with events_server(runtime) as url:
        yield url


def _account(client: Any, headers: dict[str, str], email: str) -> str:
    response = client.post(
        "/api/accounts", json={"email": email, "password": "pw-123456"}, headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def test_changes_arrive_live_and_only_for_their_tenant(
    client: Any, as_tenant: Any, events_url: str
) -> None:
    a, b = as_tenant(TENANT_A), as_tenant(TENANT_B)
    with stream(events_url, a) as sa, stream(events_url, b) as sb:
        assert sa.status_code == 200 and sa.headers["content-type"].startswith("text/event-stream")
        lines_a, lines_b = sa.iter_lines(), sb.iter_lines()
        one = _account(client, a, "one@example.com")
        mine_b = _account(client, b, "bee@example.com")
        (event_b,) = read_events(lines_b, 1)
        (event_a,) = read_events(lines_a, 1)
    assert event_a.event == "account.created"
    assert json.loads(event_a.data)["id"] == one
    # B's first event is its own account: A's change never reached B's stream
    assert json.loads(event_b.data)["id"] == mine_b
    assert one not in event_b.data


def test_last_event_id_resumes(client: Any, as_tenant: Any, events_url: str) -> None:
    a = as_tenant(TENANT_A)
    first = _account(client, a, "first@example.com")
    start = client.get("/api/changes", headers=a).get_json()["new_state"]
    second = _account(client, a, "second@example.com")
    client.put(f"/api/accounts/{first}", json={"display_name": "F"}, headers=a)
    with stream(events_url, {**a, "Last-Event-ID": start}) as resumed:
        got = read_events(resumed.iter_lines(), 2)
    assert [(e.event, json.loads(e.data)["id"]) for e in got] == [
        ("account.created", second),
        ("account.updated", first),
    ]
    assert got[1].id == client.get("/api/changes", headers=a).get_json()["new_state"]


def test_heartbeats_keep_an_idle_stream_open(
    make_settings: Any, as_tenant: Any, tmp_path: Any
) -> None:
    from email_service.app import create_app
    from email_service.store import migrate

    settings = make_settings(events_heartbeat_seconds=0.2)
    app = create_app(settings, configure_logs=False)
    runtime = app.extensions["email_service"]
    migrate.upgrade(runtime.db.engine)
    comments: list[str] = []
    with events_server(runtime) as url, stream(url, as_tenant(TENANT_A)) as open_stream:
        lines = open_stream.iter_lines()
        while not any(c.startswith("ping") for c in comments):
            line = next(lines)
            if line.startswith(":"):
                comments.append(line[1:].strip())
    runtime.db.dispose()
    assert "stream open" in comments


def test_errors_are_problems_before_the_stream(
    client: Any, as_tenant: Any, runtime: Any, events_url: str
) -> None:
    a = as_tenant(TENANT_A)
    assert httpx.get(f"{events_url}/api/events").status_code == 401
    foreign = {**a, "X-Tenant-ID": TENANT_B}
    assert httpx.get(f"{events_url}/api/events", headers=foreign).status_code == 403
    bad = httpx.get(f"{events_url}/api/events", headers={**a, "Last-Event-ID": "zz"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    start = client.get("/api/changes", headers=a).get_json()["new_state"]
    _account(client, a, "old@example.com")
    with runtime.db.session() as session:
        session.execute(update(Change).values(created_at=utcnow() - timedelta(days=30)))
    with runtime.db.session() as session:
        feed.prune(session, timedelta(days=1))
    gone = httpx.get(f"{events_url}/api/events", headers={**a, "Last-Event-ID": start})
    assert gone.status_code == 410 and gone.json()["code"] == "cannot_calculate_changes"


def test_a_browser_on_the_apis_loopback_origin_may_read_the_stream(
    runtime: Any, as_tenant: Any, events_url: str
) -> None:
    origin = f"http://127.0.0.1:{runtime.settings.flask_port}"  # `make run`'s client
    asked = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization,x-tenant-id,last-event-id",
    }
    ok = httpx.options(f"{events_url}/api/events", headers={**asked, "Origin": origin})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == origin
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in ok.headers  # the token is the credential
    with stream(events_url, {**as_tenant(TENANT_A), "Origin": origin}) as sa:
        assert sa.headers["access-control-allow-origin"] == origin
    foreign = httpx.options(
        f"{events_url}/api/events", headers={**asked, "Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in foreign.headers


def test_embedded_server_listens_once_its_port_is_free(make_settings: Any) -> None:
    """A replacement Gunicorn worker starts while the old one still holds the port."""
    import socket
    import time

    from email_service.api import events as events_api
    from email_service.app import create_app
    from tests.servers.ports import free_ports

    port = free_ports(1)[0]
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    app = create_app(make_settings(events_port=port), configure_logs=False)
    runtime = app.extensions["email_service"]
    events_api.start_embedded(runtime)
    time.sleep(0.5)  # the server's first bind fails while the port is held
    holder.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the embedded server never listened"
        time.sleep(0.1)
    runtime.db.dispose()
