"""The load test's floor: the least an authenticated list endpoint can do in Flask.

Two routes, GET /api/accounts and GET /api/messages (a folder's newest messages). Each
verifies the bearer token (PyJWT, HS256, the service's audience and issuer), checks the
tenant header against the token's tenants, runs one prepared SELECT of the page (the tenant's first
accounts; a folder's newest 50 messages in keyset order, with the columns the API's
message list returns) on a connection kept per thread (autocommit, no pool, no ORM), and writes
the rows as JSON. No request id, no log line, no metrics, no validation of the output.
Served under the same Gunicorn settings as the hello-world, it measures what the required
stack (Flask, PyJWT, psycopg, PostgreSQL) costs per request before any of the service's
own code runs: GET /api/accounts and GET /api/messages cannot be faster than this.
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
# What a message list shows (api/messages.py MessageSummary), newest first in a folder.
_MESSAGE_COLUMNS = (
    "id, account_id, folder_id, thread_id, subject, from_name, from_email, to_addrs, "
    "received_date, sent_at, flags, seen, flagged, answered, has_attachments, snippet, size"
)
_MESSAGES = (
    f"SELECT {_MESSAGE_COLUMNS} FROM email_message WHERE tenant_id = %s AND folder_id = %s "
    "ORDER BY received_date DESC, id DESC LIMIT %s"
)
_MESSAGE_NAMES = _MESSAGE_COLUMNS.split(", ")
_PAGE_SIZE = 50
_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = psycopg.connect(_DATABASE_URL, autocommit=True)
    return connection


def _tenant() -> str | Response:
    """The verified tenant of the request, or the 401/403 answer."""
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
    return tenant


@app.get("/api/accounts")
def accounts() -> Response:
    """The tenant's first 50 accounts."""
    tenant = _tenant()
    if isinstance(tenant, Response):
        return tenant
    rows = _connection().execute(_PAGE, (tenant, _PAGE_SIZE + 1), prepare=True).fetchall()
    items = [dict(zip(_NAMES, row, strict=True)) for row in rows[:_PAGE_SIZE]]
    body = json.dumps({"items": items, "next_cursor": None}, default=str)
    return Response(body, mimetype="application/json")


@app.get("/api/messages")
def messages() -> Response:
    """The newest 50 messages of the folder ``folder_id``, and the cursor of the next page."""
    tenant = _tenant()
    if isinstance(tenant, Response):
        return tenant
    folder = request.args.get("folder_id", "")
    rows = (
        _connection().execute(_MESSAGES, (tenant, folder, _PAGE_SIZE + 1), prepare=True).fetchall()
    )
    items = []
    for row in rows[:_PAGE_SIZE]:
        item = dict(zip(_MESSAGE_NAMES, row, strict=True))
        name, email = item.pop("from_name"), item.pop("from_email")
        item["sender"] = {"name": name or "", "email": email} if email else None
        item["to"] = item.pop("to_addrs")
        items.append(item)
    last = rows[_PAGE_SIZE - 1] if len(rows) > _PAGE_SIZE else None
    cursor = f"{last[8].isoformat()}|{last[0]}" if last is not None else None
    body = json.dumps({"items": items, "next_cursor": cursor}, default=str)
    return Response(body, mimetype="application/json")
