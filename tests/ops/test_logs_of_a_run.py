"""Logs of a real run at LOG_LEVEL=DEBUG: every line of every log file and of the server's
output is JSON with the fixed fields, a sync's lines carry the request id of the API call
that triggered it (in-process jobs and a Celery worker), and no password, its base64, the
bearer token or a message body appears anywhere."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from email_service.security.crypto import generate_key
from tests.ops.client import call
from tests.servers.service import Server, base_env, cli, running
from tests.servers.wait import wait_for
from tests.support.mailgen import append, imap_login

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
FIELDS = ("timestamp", "level", "service", "request_id", "tenant_id", "message")
WAIT_S = 90


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return base_env(
        tmp_path,
        FLASK_ENV="production",  # production output: JSON lines only
        ALLOW_UNPATCHED_PYTHON="true",  # the test machine's Python may predate CVE fixes
        JWT_SECRET=secrets.token_urlsafe(48),
        ENCRYPTION_KEY=generate_key(),
        LOG_LEVEL="DEBUG",
        ALLOWED_MAIL_HOSTS="127.0.0.1/8",
        BLOB_FSYNC="false",
        **extra,
    )


def _secrets(*values: str) -> set[str]:
    """Each value, its base64, and SASL PLAIN blobs built from the pairs that use it."""
    found = set()
    for value in values:
        found |= {value, base64.b64encode(value.encode()).decode()}
    return found


def _plain(username: str, password: str) -> str:
    return base64.b64encode(f"\0{username}\0{password}".encode()).decode()


class Api:
    """The running API with a token and the account body for the test's Dovecot."""

    def __init__(self, server: Server, token: str, dovecot: Any) -> None:
        self.server, self.token, self.dovecot = server, token, dovecot

    def create(self, email: str, username: str, password: str) -> str:
        body = {
            "email": email,
            "username": username,
            "password": password,
            "imap_host": "127.0.0.1",
            "imap_port": self.dovecot.imap_port,
            "imap_security": "none",
        }
        status, _, raw = call(self.server.port, "POST", "/api/accounts", self._auth(), body)
        assert status == 201, raw
        return str(json.loads(raw)["id"])

    def sync(self, account_id: str, request_id: str) -> dict[str, Any]:
        headers = {**self._auth(), "X-Request-ID": request_id}
        status, sent, _ = call(self.server.port, "POST", f"/api/sync/imap/{account_id}", headers)
        assert status == 202 and sent["X-Request-ID"] == request_id

        def finished() -> dict[str, Any] | None:
            path = f"/api/sync/status/{account_id}"
            state: dict[str, Any] = json.loads(call(self.server.port, "GET", path, self._auth())[2])
            return state if state["state"] in ("ok", "error", "auth_failed") else None

        return wait_for(finished, f"the sync of {account_id}", WAIT_S, interval=0.2)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _run_scenario(api: Api, mail_user: Any, canary: str) -> tuple[str, str]:
    """A sync refused by the server and one that succeeds; returns their request ids."""
    wrong = api.create(f"wrong-{mail_user.email}", mail_user.email, canary)
    right = api.create(mail_user.email, mail_user.email, mail_user.password)
    refused_id, synced_id = f"trace-{secrets.token_hex(6)}", f"trace-{secrets.token_hex(6)}"
    assert api.sync(wrong, refused_id)["state"] == "auth_failed"
    assert api.sync(right, synced_id)["state"] == "ok"
    return refused_id, synced_id


def _check_lines(files: list[Path]) -> list[dict[str, Any]]:
    parsed = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"{path.name}:{number} is not JSON: {line[:200]}") from None
            missing = [f for f in FIELDS if f not in entry]
            assert not missing, f"{path.name}:{number} lacks {missing}: {line[:200]}"
            assert entry["service"] == "email_service"
            parsed.append({**entry, "_file": path.name})
    return parsed


def _check_secrets(files: list[Path], forbidden: set[str]) -> int:
    found = 0
    for path in files:
        text = path.read_text(errors="replace")
        for secret in forbidden:
            if secret in text:
                found += text.count(secret)
                print(f"secret in {path.name}: {secret[:6]}...")
    return found


def _lines_of(entries: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("request_id") == request_id]


@pytest.fixture
def body_canary(mail_user: Any, dovecot: Any) -> str:
    """A message in the user's INBOX whose body holds a canary."""
    canary = f"body-canary-{secrets.token_hex(8)}"
    raw = (
        f"From: a@example.org\r\nTo: {mail_user.email}\r\nSubject: hello\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.org>\r\n\r\nDear user, {canary}\r\n"
    ).encode()
    with imap_login(dovecot, mail_user) as client:
        append(client, "INBOX", raw)
    return canary


def test_embedded_run_logs_json_only_and_no_secret(
    tmp_path: Path, dovecot: Any, mail_user: Any, body_canary: str
) -> None:
    env = _env(tmp_path)
    canary = f"Pw-canary-{secrets.token_hex(8)}"
    migrate_out = tmp_path / "migrate.out"
    migrate_out.write_text(cli(env, "migrate").stderr)
    token = cli(env, "token", "--tenant", "default").stdout.strip()
    with running(env, tmp_path / "serve.out") as server:
        refused_id, synced_id = _run_scenario(Api(server, token, dovecot), mail_user, canary)
    logs = sorted(Path(env["LOG_DIR"]).glob("*.log*"))
    assert {"access.log", "email-service.log", "error.log"} <= {p.name for p in logs}
    outputs = [*logs, server.output, migrate_out]
    entries = _check_lines(outputs)
    forbidden = _secrets(canary, mail_user.password, body_canary, token)
    forbidden |= {_plain(mail_user.email, canary), _plain(mail_user.email, mail_user.password)}
    leaked = _check_secrets(outputs, forbidden)
    print(f"\nlog lines checked: {len(entries)} in {len(outputs)} files; secrets found: {leaked}")
    assert leaked == 0
    assert any(e["level"] == "DEBUG" for e in entries)  # LOG_LEVEL=DEBUG was in force
    access = [e for e in entries if e["_file"] == "access.log"]
    assert access and all(isinstance(e.get("duration_ms"), float) for e in access)
    assert all(e.get("duration_ms") is not None for e in entries if e["message"] == "request")
    failed = _lines_of(entries, refused_id)
    assert any(e["message"].startswith("job sync_imap_account failed") for e in failed), failed
    assert any(e["_file"] == "error.log" for e in failed)  # the failure is an ERROR
    synced = _lines_of(entries, synced_id)
    assert any(e["message"] == "account synced" and e["duration_ms"] >= 0 for e in synced)
    assert all(e["tenant_id"] == "default" for e in synced if e["message"] != "request")


def test_celery_worker_logs_carry_the_api_request_id(
    tmp_path: Path, dovecot: Any, mail_user: Any, body_canary: str, redis_url: str
) -> None:
    env = _env(tmp_path, REDIS_URL=redis_url, GUNICORN_WORKERS="2")
    canary = f"Pw-canary-{secrets.token_hex(8)}"
    cli(env, "migrate")
    token = cli(env, "token", "--tenant", "default").stdout.strip()
    with (
        running(env, tmp_path / "worker.out", "worker", "--concurrency", "2"),
        running(env, tmp_path / "serve.out") as server,
    ):
        refused_id, synced_id = _run_scenario(Api(server, token, dovecot), mail_user, canary)
    logs = sorted(Path(env["LOG_DIR"]).glob("*.log*"))
    entries = _check_lines(logs)
    worker_lines = [e for e in entries if e.get("task") == "sync_imap_account"]
    refused = _lines_of(worker_lines, refused_id)
    assert any(e["message"] == "task finished" and e["state"] == "failure" for e in refused)
    synced = _lines_of(worker_lines, synced_id)
    assert any(e["message"] == "account synced" for e in synced), synced
    assert all(e["tenant_id"] == "default" for e in synced)
    forbidden = _secrets(canary, mail_user.password, body_canary, token)
    forbidden |= {_plain(mail_user.email, canary), _plain(mail_user.email, mail_user.password)}
    outputs = [*logs, tmp_path / "worker.out", tmp_path / "serve.out"]
    leaked = _check_secrets(outputs, forbidden)
    print(
        f"\nworker run: {len(entries)} JSON lines, request id on {len(synced)} sync lines; "
        f"secrets found: {leaked}"
    )
    assert leaked == 0
