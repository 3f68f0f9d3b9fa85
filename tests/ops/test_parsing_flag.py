"""ENABLE_EMAIL_PARSING=false: the sync stores raw MIME and headers, no bodies; the
emails_processed_total counters follow (synced always; parsed only when parsing)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from email_service.app import create_app
from email_service.observability import metrics
from email_service.services import gateways
from email_service.services.sync.run import run_sync
from email_service.store import migrate
from email_service.store.models import Attachment, Base, Message
from tests.conftest import TENANT_A
from tests.ops.test_metrics import value
from tests.support.accounts import register
from tests.support.mailgen import append, imap_login, make_message

MESSAGES = 6


def _counts() -> dict[str, float]:
    text = metrics.render()[0].decode()
    return {k: value(text, "emails_processed_total", kind=k) for k in metrics.EMAIL_KINDS}


@pytest.fixture(autouse=True)
def _empty_tables(make_settings: Any) -> Any:
    """Leave the shared PostgreSQL database as the conftest's app fixture does: empty."""
    yield
    runtime = create_app(make_settings(), configure_logs=False).extensions["email_service"]
    with runtime.db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    runtime.db.dispose()


@pytest.mark.parametrize("parsing", [True, False])
def test_sync_with_and_without_parsing(
    make_settings: Any, dovecot: Any, mail_user: Any, parsing: bool
) -> None:
    with imap_login(dovecot, mail_user) as client:
        for i in range(MESSAGES):
            append(client, "INBOX", make_message(i, attachment=True))
    app = create_app(make_settings(enable_email_parsing=parsing), configure_logs=False)
    runtime = app.extensions["email_service"]
    migrate.upgrade(runtime.db.engine)
    account_id = register(runtime, TENANT_A, dovecot, mail_user)
    before = _counts()
    report = run_sync(runtime, TENANT_A, account_id, owner=uuid.uuid4().hex)
    after = _counts()
    assert report.new_messages == MESSAGES
    with runtime.db.session() as session:
        rows = session.scalars(select(Message).where(Message.account_id == account_id)).all()
        attachments = session.scalars(
            select(Attachment).where(Attachment.message_id.in_([row.id for row in rows]))
        ).all()
    assert len(rows) == MESSAGES
    assert all(row.subject and row.from_email and row.message_id for row in rows)  # headers
    assert all(
        gateways.blob_store(runtime, TENANT_A).get(row.blob_sha256) for row in rows
    )  # raw MIME
    delta = {kind: after[kind] - before[kind] for kind in after}
    assert delta["synced"] == MESSAGES
    if parsing:
        assert all(row.body_text for row in rows) and len(attachments) == MESSAGES
        assert delta["parsed"] + delta["failed"] == MESSAGES
    else:
        assert not any(row.body_text or row.body_html for row in rows)
        assert attachments == [] and delta["parsed"] == delta["failed"] == 0
    runtime.db.dispose()
