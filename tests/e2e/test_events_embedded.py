"""`email-service serve` on the embedded default also serves /api/events (EVENTS_PORT),
and webhooks are delivered by its in-process runner: `make run` stays current too."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.servers.events import read_events
from tests.servers.ports import free_port
from tests.servers.service import base_env, cli
from tests.servers.webhook_receiver import webhook_receiver

PATIENCE_S = 60.0


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.1)


def test_serve_streams_events_and_delivers_webhooks(serve: Any, tmp_path: Path) -> None:
    events_port = free_port()
    env = base_env(
        tmp_path,
        EVENTS_PORT=str(events_port),
        ALLOWED_WEBHOOK_HOSTS="127.0.0.1",
        WEBHOOK_DISPATCH_SECONDS="0.2",
    )
    assert cli(env, "migrate").returncode == 0
    base, _proc = serve(env)
    events_url = f"http://127.0.0.1:{events_port}"
    _wait_up(events_url + "/health")
    token = cli(env, "token", "--tenant", "default").stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    with webhook_receiver() as receiver:
        hook = httpx.post(
            base + "/api/webhooks",
            json={"url": f"{receiver.url}/ok", "event_types": ["account.*"]},
            headers=auth,
        )
        assert hook.status_code == 201, hook.text
        with httpx.stream(
            "GET", events_url + "/api/events", headers=auth, timeout=httpx.Timeout(30.0)
        ) as stream:
            assert stream.status_code == 200
            created = httpx.post(
                base + "/api/accounts",
                json={"email": "live@example.com", "password": "pw-123456"},
                headers=auth,
            ).json()
            (event,) = read_events(stream.iter_lines(), 1)
        assert event.event == "account.created" and json.loads(event.data)["id"] == created["id"]
        assert receiver.wait_for(lambda: bool(receiver.on("/ok")), PATIENCE_S)
        (request,) = receiver.on("/ok")
        body = Webhook(hook.json()["secret"]).verify(request.body, request.headers)
        assert body["type"] == "account.created" and body["data"]["id"] == created["id"]
