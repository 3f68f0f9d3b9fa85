"""The rate limit holds across 4 Gunicorn workers sharing Redis, whatever X-Forwarded-For
a client sends (no trusted proxies): accepted requests <= the limit."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL
from tests.ops.client import call, loopback_source
from tests.servers.service import base_env, cli, running

pytestmark = [pytest.mark.redis, pytest.mark.slow]
LIMIT = 20  # per minute, per client IP
SENT = 120  # six times the limit, from 16 threads at once
WORKERS = 4


def _spoofed() -> dict[str, str]:
    fake = f"198.51.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    return {"X-Forwarded-For": fake, "X-Real-IP": fake, "Forwarded": f"for={fake}"}


def test_limit_holds_across_four_workers_with_spoofed_forwarded_for(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        REDIS_URL=REDIS_URL,
        GUNICORN_WORKERS=str(WORKERS),
        GUNICORN_THREADS="4",
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_REQUESTS_PER_MINUTE=str(LIMIT),
        RATE_LIMIT_REQUESTS_PER_HOUR="10000",
        RATE_LIMIT_TENANT_REQUESTS_PER_MINUTE="10000",
    )
    cli(env, "migrate")
    token = cli(env, "token", "--tenant", "default").stdout.strip()
    source = loopback_source()  # this run's own key in the shared Redis
    with running(env, tmp_path / "serve.out") as server:

        def one(_: int) -> int:
            headers = {"Authorization": f"Bearer {token}", **_spoofed()}
            return call(server.port, "GET", "/api/accounts", headers, source=source)[0]

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(one, range(SENT)))
        metrics_dir = Path(env["DATA_DIR"]) / "metrics" / f"api-{server.port}"
        workers_seen = len(list(metrics_dir.glob("counter_*.db")))
        other = call(server.port, "GET", "/api/accounts", {"Authorization": f"Bearer {token}"})
    accepted, refused = statuses.count(200), statuses.count(429)
    print(
        f"\nrate limit across {WORKERS} workers ({workers_seen} served): "
        f"{accepted} accepted of {SENT} with spoofed X-Forwarded-For, limit {LIMIT}/min"
    )
    assert accepted + refused == SENT, statuses
    assert 0 < accepted <= LIMIT
    assert workers_seen >= 2  # the requests really were spread over processes
    assert other[0] == 200  # another client address has its own budget
