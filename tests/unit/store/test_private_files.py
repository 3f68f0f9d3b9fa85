"""What the store writes is private whatever the umask: the SQLite files hold mail text."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from email_service.files import open_to_others, private_dir
from email_service.store.db import Database


def test_sqlite_database_and_its_wal_are_0600_under_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = Database(f"sqlite:///{tmp_path / 'data' / 'email-service.db'}")
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (body TEXT)"))
            conn.execute(text("INSERT INTO t VALUES ('mail text')"))
        modes = {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "data").iterdir()}
        db.dispose()  # (the last connection removes the -wal and -shm files)
    finally:
        os.umask(old)
    assert modes == {
        "email-service.db": 0o600,
        "email-service.db-wal": 0o600,
        "email-service.db-shm": 0o600,
    }
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_an_existing_shared_directory_is_left_alone_and_reported(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert private_dir(shared) is False and open_to_others(shared)
    assert shared.stat().st_mode & 0o777 == 0o755
    fresh = tmp_path / "a" / "b"
    old = os.umask(0o022)
    try:
        assert private_dir(fresh) is True
    finally:
        os.umask(old)
    assert {p.stat().st_mode & 0o777 for p in (fresh, fresh.parent)} == {0o700}
