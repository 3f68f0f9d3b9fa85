"""The load test's floor: the least an authenticated list endpoint can do in Flask.

It verifies the bearer token (PyJWT, HS256, the service's audience and issuer), checks the
tenant header against the token's tenants, runs one prepared SELECT of the tenant's first
page of accounts on a connection kept per thread (autocommit, no pool, no ORM), and writes
the rows as JSON. No request id, no log line, no metrics, no validation of the output.
Served under the same Gunicorn settings as the hello-world, it measures what the required
stack (Flask, PyJWT, psycopg, PostgreSQL) costs per request before any of the service's
own code runs: GET /api/accounts cannot be faster than this.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import jwt
import psycopg
from flask import Flask, Response, request

app = Flask(__name__)
_DATABASE_URL = os.environ["FLOOR_DATABASE_URL"]
_SECRET = os.environ["FLOOR_JWT_SECRET"]
_AUDIENCE = os.environ["FLOOR_JWT_AUDIENCE"]
_ISSUER = os.environ["FLOOR_JWT_ISSUER"]
_COLUMNS = (
    "id, tenant_id, email, display_name, username, imap_host, imap_port, imap_security, "
    "smtp_host, smtp_port, smtp_security, status, created_at, updated_at"
)
_PAGE = (
    f"SELECT {_COLUMNS} FROM email_account WHERE tenant_id = %s ORDER BY created_at, id LIMIT %s"
)
_NAMES = _COLUMNS.split(", ")
_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = psycopg.connect(_DATABASE_URL, autocommit=True)
    return connection


@app.get("/api/accounts")
def accounts() -> Response:
    """The tenant's first 50 accounts."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return Response(status=401)
    try:
        claims = jwt.decode(
            token, _SECRET, algorithms=["HS256"], audience=_AUDIENCE, issuer=_ISSUER
        )
    except jwt.InvalidTokenError:
        return Response(status=401)
    tenant = request.headers.get("X-Tenant-ID", "")
    if tenant not in claims.get("tenants", []):
        return Response(status=403)
    rows = _connection().execute(_PAGE, (tenant, 51), prepare=True).fetchall()
    items = [dict(zip(_NAMES, row, strict=True)) for row in rows[:50]]
    body = json.dumps({"items": items, "next_cursor": None}, default=str)
    return Response(body, mimetype="application/json")
