"""Export: a synced mailbox comes back as an mbox whose messages are, byte for byte, the
server's (SHA-256 of every message compared), through the API and the command."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from email_service.services.sync.run import run_sync
from tests.conftest import TENANT_A, TENANT_B
from tests.support.accounts import register
from tests.support.mailgen import append, fetch_raw, imap_login, make_message

pytestmark = pytest.mark.dovecot

FOLDERS = {"INBOX": 5, "Archive": 3, "Entw&APw-rfe": 2}
# Lines an mbox must quote, and one it must leave alone; CRLF as the server keeps them.
TRICKY = (
    b"From: Quoting <q@example.org>\r\nTo: a@example.test\r\nSubject: From lines\r\n"
    b"Message-ID: <tricky@example.org>\r\n\r\n"
    b"From here on, quoting matters.\r\n>From quoted once\r\n>>From twice\r\nFromage\r\n"
)


def _server_hashes(dovecot: Any, user: Any) -> Counter[str]:
    found: Counter[str] = Counter()
    with imap_login(dovecot, user) as client:
        for folder in FOLDERS:
            client.select(f'"{folder}"', readonly=True)
            typ, data = client.uid("SEARCH", "ALL")
            assert typ == "OK"
            for uid in (data[0] or b"").split():
                found[hashlib.sha256(fetch_raw(client, folder, int(uid))).hexdigest()] += 1
    return found


def _unmbox(data: bytes) -> list[bytes]:
    """Read an mboxrd file: split on separators, drop the one newline, unquote."""
    starts = [m.start() for m in re.finditer(rb"^From ", data, re.M)]
    messages = []
    for start, end in zip(starts, [*starts[1:], len(data)], strict=True):
        body = data[data.index(b"\n", start) + 1 : end]
        assert body.endswith(b"\n")
        messages.append(re.sub(rb"^>(>*From )", rb"\1", body[:-1], flags=re.M))
    return messages


@pytest.fixture
def synced(runtime: Any, dovecot: Any, mail_user: Any) -> uuid.UUID:
    with imap_login(dovecot, mail_user) as client:
        for folder in FOLDERS:
            if folder != "INBOX":
                client.create(f'"{folder}"')
        n = 0
        for folder, count in FOLDERS.items():
            for _ in range(count):
                append(client, folder, make_message(n, attachment=n % 3 == 0, html=n % 2 == 0))
                n += 1
        append(client, "INBOX", TRICKY)
    account = register(runtime, TENANT_A, dovecot, mail_user)
    run_sync(runtime, TENANT_A, account, owner=uuid.uuid4().hex)
    return account


def test_api_export_is_byte_identical_to_the_server(
    client: Any, as_tenant: Any, synced: uuid.UUID, dovecot: Any, mail_user: Any
) -> None:
    response = client.get(f"/api/accounts/{synced}/export", headers=as_tenant(TENANT_A))
    assert response.status_code == 200 and response.mimetype == "application/mbox"
    exported = _unmbox(response.get_data())
    server = _server_hashes(dovecot, mail_user)
    assert len(exported) == sum(server.values()) == 11
    assert Counter(hashlib.sha256(m).hexdigest() for m in exported) == server
    assert b"\n>From here on" in response.get_data()  # quoted in the file, not in the mail
    foreign = client.get(f"/api/accounts/{synced}/export", headers=as_tenant(TENANT_B))
    assert foreign.status_code == 404


def test_command_export_writes_the_same_mbox(
    client: Any, as_tenant: Any, runtime: Any, synced: uuid.UUID, tmp_path: Path
) -> None:
    settings = runtime.settings
    env = {
        "PATH": str(Path(sys.executable).parent),
        "FLASK_ENV": "development",
        "DATA_DIR": str(settings.data_dir),
        "JWT_SECRET": settings.jwt_secret,
        "ENCRYPTION_KEY": ",".join(settings.encryption_key),
        "DATABASE_URL": settings.database_url or f"sqlite:///{settings.data_dir}/email-service.db",
    }
    out = tmp_path / "export.mbox"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "email-service"),
            "accounts",
            "export",
            str(synced),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "11/11" in done.stderr  # the progress bar's last state
    api = client.get(f"/api/accounts/{synced}/export", headers=as_tenant(TENANT_A)).get_data()
    assert out.read_bytes() == api
