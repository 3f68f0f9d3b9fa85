"""Deletion that deletes, on both backends, with mail synced from the real Dovecot.

A canary string only in one account's mail must leave every file under DATA_DIR (the
SQLite database included) and, on PostgreSQL, a pg_dump of the database; the identical
message of another account of the same tenant, and of another tenant, stays readable.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from email_service.services.lifecycle import deletion
from email_service.services.runtime import Runtime
from email_service.services.sync.run import run_sync
from email_service.store.blob_s3 import S3BlobSpace, client
from email_service.store.models import Deletion, Message
from tests.conftest import TENANT_A, TENANT_B
from tests.support import canary
from tests.support.accounts import register
from tests.support.compose_api import running_app
from tests.support.mailgen import append, fetch_raw, imap_login

pytestmark = pytest.mark.dovecot


def _message(subject: str, text: str, attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.org>"
    msg["To"] = "someone@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}@example.org>"
    msg.set_content(text)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="text", subtype="plain", filename="notes.txt")
    return msg.as_bytes(policy=SMTP)  # CRLF, as the server stores and returns it


@pytest.fixture
def app(make_settings: Any, blob_backend: dict[str, str]) -> Iterator[tuple[FlaskClient, Runtime]]:
    """An app collecting blobs at once (no grace period) and keeping drafts local."""
    settings = make_settings(blob_grace_seconds=0, save_drafts_to_imap=False, **blob_backend)
    with running_app(settings) as (api, runtime):
        yield api, runtime


def _synced(runtime: Runtime, tenant: str, dovecot: Any, user: Any) -> uuid.UUID:
    account_id = register(runtime, tenant, dovecot, user)
    run_sync(runtime, tenant, account_id, owner=uuid.uuid4().hex)
    return account_id


def _raw_of(api: FlaskClient, headers: dict[str, str], account_id: uuid.UUID) -> list[bytes]:
    page = api.get(f"/api/messages?account_id={account_id}", headers=headers).get_json()
    return [
        api.get(f"/api/messages/{m['id']}/raw", headers=headers).get_data() for m in page["items"]
    ]


def _stored(runtime: Runtime, needle: bytes) -> dict[str, int]:
    """The canary's occurrences in DATA_DIR's files, the object store and the database."""
    found = {"files": sum(canary.in_files(runtime.settings.data_dir, needle).values())}
    if isinstance(runtime.blobs, S3BlobSpace):
        location = runtime.blobs.location
        objects = canary.in_objects(client(location), location.bucket, location.prefix, needle)
        found["objects"] = sum(objects.values())
    found["database"] = _database_count(runtime, needle)
    return found


def _database_count(runtime: Runtime, needle: bytes) -> int:
    """The canary in the database: a dump on PostgreSQL (SQLite's file is under DATA_DIR)."""
    if runtime.db.dialect != "postgresql":
        return 0
    url = runtime.settings.sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://")
    return canary.in_pg_dump(url, needle)


def test_deleting_an_account_leaves_no_trace_of_its_mail(
    app: tuple[FlaskClient, Runtime], as_tenant: Any, dovecot: Any, mail_user: Any
) -> None:
    api, runtime = app
    secret = f"zqxcanary{secrets.token_hex(8)}"
    shared = _message("shared news", "the same message for everyone")
    own = _message("private", f"only here: {secret}", attachment=f"notes {secret}".encode())
    users = [
        mail_user,
        *(
            dovecot.add_user(f"u{secrets.token_hex(5)}@example.test", "pw-1234567")
            for _ in range(2)
        ),
    ]
    with imap_login(dovecot, users[0]) as client:
        append(client, "INBOX", own)
        append(client, "INBOX", shared)
    for user in users[1:]:
        with imap_login(dovecot, user) as client:
            uid = append(client, "INBOX", shared)
            assert fetch_raw(client, "INBOX", uid) == shared
    doomed = _synced(runtime, TENANT_A, dovecot, users[0])
    sibling = _synced(runtime, TENANT_A, dovecot, users[1])  # same tenant, same message
    other = _synced(runtime, TENANT_B, dovecot, users[2])  # another tenant, same message
    headers = as_tenant(TENANT_A)
    upload = api.post(
        "/api/compose/attachments",
        headers=headers,
        data={"file": (io.BytesIO(f"upload {secret}".encode()), "a.txt", "text/plain")},
        content_type="multipart/form-data",
    ).get_json()
    draft = api.post(
        "/api/compose/draft",
        headers=headers,
        json={
            "account_id": str(doomed),
            "to": ["x@example.test"],
            "subject": secret,
            "body": f"draft {secret}",
            "attachments": [upload["id"]],
        },
    )
    assert draft.status_code == 201, draft.get_json()
    needle = secret.encode()
    before = _stored(runtime, needle)  # the test can fail: the canary is stored
    assert before["database" if runtime.db.dialect == "postgresql" else "files"] > 0
    assert before.get("objects", 1) > 0

    assert api.delete(f"/api/accounts/{doomed}", headers=headers).status_code == 204
    deletion.finish_deletions(runtime, TENANT_A)  # (the job the API queued may be first)

    assert _stored(runtime, needle) == dict.fromkeys(before, 0)
    # the tenant keeps one blob: the shared message its other account still has
    assert [d for d, _ in runtime.blobs.tenant(TENANT_A).listing()] == [_sha(shared)]
    with runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Deletion)) == 0
        assert session.scalar(select(func.count()).where(Message.account_id == doomed)) == 0
    assert api.get(f"/api/accounts/{doomed}", headers=headers).status_code == 404
    assert _raw_of(api, headers, sibling) == [shared]
    assert _raw_of(api, as_tenant(TENANT_B), other) == [shared]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_unreferenced_blobs_wait_for_the_grace_period(make_settings: Any) -> None:
    with running_app(make_settings(blob_grace_seconds=3600)) as (_api, runtime):
        store = runtime.blobs.tenant(TENANT_A)
        young = store.put(b"written a moment ago, its row not yet committed")
        old = store.put(b"left by a deletion long ago")
        os.utime(store.path(old), (time.time() - 7200, time.time() - 7200))
        report = deletion.collect(runtime, TENANT_A)
        assert (report.blobs_removed, report.blobs_young) == (1, 1)
        assert store.exists(young) and not store.exists(old)


def test_sweep_moves_blobs_of_the_shared_layout_into_each_tenant(
    make_settings: Any, dovecot: Any, mail_user: Any
) -> None:
    with running_app(make_settings(blob_grace_seconds=0)) as (_api, runtime):
        with imap_login(dovecot, mail_user) as client:
            append(client, "INBOX", _message("old layout", "stored by an earlier version"))
        account = _synced(runtime, TENANT_A, dovecot, mail_user)
        store = runtime.blobs.tenant(TENANT_A)
        [(digest, _)] = list(store.listing())
        legacy = runtime.settings.data_dir / "blobs" / digest[:2] / digest
        legacy.parent.mkdir(parents=True)
        store.path(digest).rename(legacy)  # as an earlier version left it
        assert store.get(digest)  # still read, from the shared layout
        report = deletion.sweep(runtime)
        assert (report.blobs_rehomed, report.legacy_removed) == (1, 1)
        assert not legacy.exists() and store.path(digest).exists()
        with runtime.db.session() as session:
            row = session.scalar(select(Message).where(Message.account_id == account))
            assert row is not None and store.get(row.blob_sha256) == store.get(digest)
