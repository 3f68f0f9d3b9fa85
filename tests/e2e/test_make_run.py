"""README's quick start on a fresh clone: `make run` serves /health and accepts an account."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.servers.ports import free_port
from tests.servers.process import kill_tree
from tests.servers.service import wait_http

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_run_on_a_fresh_clone(tmp_path: Path) -> None:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("git and make are needed")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLASK_", "DATABASE_", "REDIS_", "JWT_", "ENCRYPTION_", "VIRTUAL_ENV"))
    }
    env["FLASK_PORT"] = str(port)
    proc: Any = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        hint = _printed_hint(proc)
        assert hint.endswith("token --tenant default"), hint
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        token = subprocess.run(
            ["bash", "-c", hint], cwd=clone, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        created = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"email": "quick@example.com", "password": "pw"}',
                f"http://127.0.0.1:{port}/api/accounts",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert created == "201"
        assert (clone / "data" / "email-service.db").exists()
    finally:
        kill_tree(proc)


def _printed_hint(proc: Any) -> str:
    """Read the server's start-up lines up to the token hint; check the URL on the way."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("mint a token with: "):
            assert any("listening on http://127.0.0.1:" in s for s in seen), seen
            return line.removeprefix("mint a token with: ").strip()
    raise AssertionError("".join(seen))
