"""CPython's test_email corpus through the real Dovecot and the sync; parse_email_body."""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from email_service.app import create_app
from email_service.services import gateways
from email_service.services.sync.run import run_sync
from email_service.store import migrate
from email_service.store.models import Message
from tests.conftest import TENANT_A, TENANT_B
from tests.servers.wait import wait_for
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login, status

CORPUS = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"


def _corpus() -> list[bytes]:
    files = sorted(CORPUS.glob("msg_*.txt")) if CORPUS.is_dir() else []
    if not files:
        pytest.skip(f"CPython's test_email corpus is not installed at {CORPUS}")
    return [f.read_bytes() for f in files]


def _account(runtime: Any, dovecot: Any, user: Any) -> Any:
    return register(runtime, TENANT_A, dovecot, user)


def test_every_corpus_message_is_stored_parsed_or_raw(
    runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    raws = _corpus()
    with imap_login(dovecot, mail_user) as imap:
        for raw in raws:
            append(imap, "INBOX", raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        on_server = status(imap, "INBOX")["MESSAGES"]
    account_id = _account(runtime, dovecot, mail_user)
    report = run_sync(runtime, TENANT_A, account_id, owner="corpus")
    assert on_server == len(raws) == report.new_messages
    with runtime.db.session() as session:
        stored = session.scalar(
            select(func.count(Message.id)).where(Message.account_id == account_id)
        )
        unparsed = session.scalar(
            select(func.count(Message.id)).where(
                Message.account_id == account_id, Message.parse_error.is_not(None)
            )
        )
        blobs = list(session.scalars(select(Message.blob_sha256)))
    assert stored == len(raws)
    assert unparsed is not None and unparsed < len(raws)  # the odd ones are flagged, kept
    store = gateways.blob_store(runtime, TENANT_A)
    assert all(store.exists(digest) for digest in blobs)


def test_parse_email_body_reparses_from_raw(
    client: Any, as_tenant: Any, runtime: Any, dovecot: Any, mail_user: Any
) -> None:
    with imap_login(dovecot, mail_user) as imap:
        append(
            imap,
            "INBOX",
            b"From: a@example.org\r\nSubject: Hello\r\nContent-Type: "
            b"text/plain; charset=utf-8\r\n\r\nBody text \xc3\xa9\r\n",
        )
    account_id = _account(runtime, dovecot, mail_user)
    run_sync(runtime, TENANT_A, account_id, owner="t")
    with runtime.db.session() as session:
        row = session.scalars(select(Message).where(Message.account_id == account_id)).one()
        row.body_text, row.snippet, row.subject = None, "", "(lost)"  # as if never parsed
        message_id = row.id
    response = client.post(f"/api/messages/{message_id}/parse", headers=as_tenant(TENANT_A))
    assert response.status_code == 202 and response.get_json()["job_id"]

    def parsed() -> dict[str, Any] | None:
        body = client.get(f"/api/messages/{message_id}", headers=as_tenant(TENANT_A)).get_json()
        return dict(body) if body["subject"] == "Hello" else None

    body = wait_for(parsed, "the message to be parsed again", 30, interval=0.05)
    assert body["subject"] == "Hello" and body["text"].startswith("Body text é")
    found = client.get(
        "/api/sync/search", query_string={"query": "body"}, headers=as_tenant(TENANT_A)
    ).get_json()["items"]
    assert [m["id"] for m in found] == [str(message_id)]
    foreign = client.post(f"/api/messages/{message_id}/parse", headers=as_tenant(TENANT_B))
    assert foreign.status_code == 404


def test_parsing_disabled_is_503(sqlite_settings: Any, as_tenant: Any) -> None:
    app = create_app(sqlite_settings(enable_email_parsing=False), configure_logs=False)
    migrate.upgrade(app.extensions["email_service"].db.engine)
    response = app.test_client().post(
        "/api/messages/0b6f6d4e-1111-4a3b-9b6e-000000000000/parse", headers=as_tenant(TENANT_A)
    )
    assert response.status_code == 503
    assert response.get_json()["code"] == "feature_disabled"
