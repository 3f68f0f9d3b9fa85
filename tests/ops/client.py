"""HTTP of the operations tests against a served ``email-service`` (tests/servers/service.py):
one request per connection, from a chosen loopback source address."""

from __future__ import annotations

import http.client
import json
import secrets
from typing import Any


def loopback_source() -> str:
    """A random 127/8 address: this test's own client IP (rate-limit keys live in Redis)."""
    return f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


# A socket bound, not a speed check: a request may wait for a recycled Gunicorn worker to
# boot, which takes long on a 2-core machine that other suites share.
CALL_TIMEOUT_S = 120


def call(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; returns status, headers, body."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=CALL_TIMEOUT_S, source_address=(source, 0) if source else None
    )
    try:
        data = json.dumps(body).encode() if body is not None else None
        sent = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()
