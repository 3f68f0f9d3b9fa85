"""The image's and the compose file's commands, run here without Docker: the runtime
stage's environment and CMD serve the API, and the health checks pass against it (and
fail once it is gone); celery-beat's health check passes while beat ticks."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from email_service.security.crypto import generate_key
from tests.ops.test_deploy import COMPOSE, DOCKERFILE, _dockerfile_env, _load, _stages
from tests.servers.service import BIN, base_env, cli, running
from tests.servers.wait import wait_for

pytestmark = pytest.mark.slow


def _image_env(tmp_path: Path) -> dict[str, str]:
    """The runtime stage's ENV with /app and /tmp mapped into tmp_path."""
    image = _dockerfile_env(_stages(DOCKERFILE)["runtime"])
    env = base_env(tmp_path, JWT_SECRET=secrets.token_urlsafe(48), ENCRYPTION_KEY=generate_key())
    for key, value in image.items():
        if key != "PATH":
            inside = value.startswith(("/app/", "/tmp/"))
            env[key] = f"{tmp_path}{value}" if inside else value
    env["PATH"] = f"{BIN}:{env['PATH']}"  # /app/.venv/bin in the image
    for made in ("app/data", "app/logs"):  # the image's `mkdir -p /app/data /app/logs`
        (tmp_path / made).mkdir(parents=True)
    return env


def _check(command: list[str], env: dict[str, str], replace: tuple[str, str] = ("", "")) -> int:
    assert command[0] == "CMD"
    argv = [part.replace(*replace) if replace[0] else part for part in command[1:]]
    argv[0] = str(BIN / argv[0]) if argv[0] == "python" else argv[0]
    return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode


def test_image_command_serves_and_its_healthcheck_follows(tmp_path: Path) -> None:
    env = _image_env(tmp_path)
    assert env["FLASK_ENV"] == "production"
    runtime = dict(_stages(DOCKERFILE)["runtime"])
    healthcheck = ["CMD", *json.loads(runtime["HEALTHCHECK"].split(" CMD ", 1)[1])]
    command = json.loads(runtime["CMD"])
    assert command == ["email-service", "serve"]
    cli(env, "migrate")
    with running(env, tmp_path / "serve.out") as server:
        checked = {**env, "FLASK_PORT": str(server.port)}
        assert _check(healthcheck, checked) == 0
        assert (tmp_path / "app/logs/access.log").exists()  # LOG_DIR=/app/logs
        assert any((tmp_path / "tmp/email-service-metrics").iterdir())  # METRICS_DIR
    assert _check(healthcheck, checked) != 0  # nothing answers any more


def test_celery_beat_healthcheck_passes_while_beat_ticks(tmp_path: Path) -> None:
    env = _image_env(tmp_path)
    beat = _load(COMPOSE)["services"]["celery-beat"]
    assert beat["command"] == ["email-service", "beat"]
    test = beat["healthcheck"]["test"]
    data = ("/app/data", env["DATA_DIR"])
    assert _check(test, env, data) != 0  # no schedule file yet
    with running(env, tmp_path / "beat.out", "beat"):
        wait_for(
            lambda: _check(test, env, data) == 0,
            "beat's health check to pass",
            60,
            interval=0.5,
            error=lambda message: AssertionError(
                f"{message}\n{(tmp_path / 'beat.out').read_text()[-2000:]}"
            ),
        )
