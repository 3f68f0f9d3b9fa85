"""The CLI and Gunicorn for real: embedded default, PostgreSQL + Redis, bad config, rotation."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from email_service.config import Settings
from email_service.services import accounts
from email_service.services.runtime import Runtime
from tests.conftest import REDIS_URL
from tests.servers.service import base_env, cli

PASSWORD = "e2e-canary-Pa55word"


def _request(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _exercise(base: str, env: dict[str, str]) -> str:
    token = cli(env, "token", "--tenant", "default").stdout.strip()
    other = cli(env, "token", "--tenant", "other").stdout.strip()
    status, created = _request(
        "POST", base + "/api/accounts", token, {"email": "e2e@example.com", "password": PASSWORD}
    )
    assert status == 201, created
    status, listed = _request("GET", base + "/api/accounts", token)
    assert status == 200 and [a["id"] for a in listed["items"]] == [created["id"]]
    status, _ = _request("GET", f"{base}/api/accounts/{created['id']}", other)
    assert status == 403  # token for "other" asks for the default tenant
    return str(created["id"])


def test_embedded_default(serve: Any, tmp_path: Path) -> None:
    env = base_env(tmp_path)
    assert cli(env, "migrate").returncode == 0
    base, _ = serve(env)
    _exercise(base, env)
    for name in ("jwt_secret", "encryption_key"):
        assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600
    database = (tmp_path / "data" / "email-service.db").read_bytes()
    wal = tmp_path / "data" / "email-service.db-wal"
    raw = database + (wal.read_bytes() if wal.exists() else b"")
    assert b"e2e@example.com" in raw and PASSWORD.encode() not in raw
    access = (tmp_path / "logs" / "access.log").read_text()
    assert "/api/accounts" in access and PASSWORD not in access


@pytest.mark.postgres
@pytest.mark.redis
def test_postgres_and_redis_with_two_workers(serve: Any, tmp_path: Path, pg_url: str) -> None:
    env = base_env(tmp_path, DATABASE_URL=pg_url, REDIS_URL=REDIS_URL, GUNICORN_WORKERS="2")
    cli(env, "migrate")
    base, proc = serve(env)
    _exercise(base, env)
    with urllib.request.urlopen(base + "/health/ready", timeout=5) as response:
        assert json.loads(response.read())["checks"] == {"database": "ok", "redis": "ok"}
    dump = subprocess.run(
        ["pg_dump", "--data-only", pg_url], capture_output=True, text=True, check=True
    ).stdout
    assert "e2e@example.com" in dump and PASSWORD not in dump
    workers = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
    )
    assert len(workers.stdout.split()) == 2


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"GUNICORN_WORKERS": "abc"}, "GUNICORN_WORKERS"),
        ({"FLASK_ENV": "production"}, "JWT_SECRET"),
        ({"FLASK_ENV": "production", "JWT_SECRET": "J" * 40}, "JWT_SECRET"),  # repeats
        ({"FLASK_ENV": "production", "JWT_SECRET": secrets.token_urlsafe(48)}, "ENCRYPTION_KEY"),
        ({"ENCRYPTION_KEY": "too-short"}, "ENCRYPTION_KEY"),
    ],
)
def test_bad_configuration_stops_with_one_line(
    tmp_path: Path, extra: dict[str, str], variable: str
) -> None:
    result = cli(base_env(tmp_path, **extra), "serve", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "invalid configuration" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("Error: invalid configuration: ")
    assert variable in errors[0]


def test_rotate_key_reencrypts_every_row(tmp_path: Path) -> None:
    old_key = cli(base_env(tmp_path), "rotate-key", "--generate").stdout.strip()
    new_key = cli(base_env(tmp_path), "rotate-key", "--generate").stdout.strip()
    env = base_env(tmp_path, ENCRYPTION_KEY=old_key, ALLOWED_MAIL_HOSTS="localhost")
    cli(env, "migrate")
    for i in range(3):
        cli(
            {**env, "EMAIL_PASSWORD": f"pw-{i}"},
            "accounts",
            "add",
            "--tenant",
            "t",
            "--email",
            f"u{i}@example.com",
        )
    rotated = cli({**env, "ENCRYPTION_KEY": f"{new_key},{old_key}"}, "rotate-key").stdout
    assert rotated.startswith("re-encrypted 3/3 rows")
    again = cli({**env, "ENCRYPTION_KEY": f"{new_key},{old_key}"}, "rotate-key").stdout
    assert again.startswith("re-encrypted 0/3 rows")
    runtime = Runtime.build(
        Settings(
            _env_file=None,
            flask_env="development",  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            jwt_secret="j" * 40,
            encryption_key=[new_key],
        )
    )
    listed = cli(env, "accounts", "list", "--tenant", "t").stdout.splitlines()
    assert len(listed) == 3
    with runtime.db.session() as session:
        passwords = sorted(
            accounts.account_password(session, "t", uuid.UUID(line.split("\t")[0]), runtime.vault)
            for line in listed
        )
    assert passwords == ["pw-0", "pw-1", "pw-2"]
