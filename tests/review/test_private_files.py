"""Finding 9: with umask 022 the SQLite database, its WAL and shared memory, the blobs, the
generated secrets and the log files are created owner-only (0600, directories 0700)."""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from email_service.app import create_app
from email_service.observability.logging import log_file
from email_service.services import gateways
from email_service.store import migrate
from tests.conftest import TENANT_A, TENANT_B, bearer


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_and_logs_are_private_whatever_the_umask(
    tmp_path: Path, sqlite_settings: Any, umask_022: None
) -> None:
    settings = sqlite_settings(jwt_secret=None, encryption_key=[])  # generated into DATA_DIR
    app = create_app(settings, configure_logs=False)
    runtime = app.extensions["email_service"]
    migrate.upgrade(runtime.db.engine)
    client = app.test_client()
    for tenant in (TENANT_A, TENANT_B):
        token = bearer(tenant, secret=runtime.settings.jwt_secret)
        created = client.post(
            "/api/accounts",
            headers={**token, "X-Tenant-ID": tenant},
            json={"email": f"{uuid.uuid4().hex[:8]}@example.test", "password": "pw"},
        )
        assert created.status_code == 201, created.get_json()
    gateways.blob_store(runtime, TENANT_A).put(b"message text")
    handler = log_file(settings.log_dir / "email-service.log", logging.INFO)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, "line", None, None))
    handler.close()

    data = settings.data_dir
    files = [data / "email-service.db", data / "email-service.db-wal", data / "jwt_secret"]
    files += [data / "encryption_key", settings.log_dir / "email-service.log"]
    files += [p for p in (data / "blobs").rglob("*") if p.is_file()]
    for path in files:
        assert path.exists(), path
        assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))
    directories = [data, data / "blobs", *(p for p in (data / "blobs").rglob("*") if p.is_dir())]
    for path in directories:
        assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))
    runtime.db.dispose()
