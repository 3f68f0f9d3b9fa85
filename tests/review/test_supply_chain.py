"""Finding 13: CI actions pinned by commit SHA (the release in a comment, which Dependabot
keeps up to date), uv installed by hash, pip-audit over the lock in CI, Dependabot on
uv.lock, the Dockerfiles and the compose images."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
USES = re.compile(r"uses: (?P<action>[\w./-]+)@(?P<ref>\S+)(?P<comment>.*)$", re.M)


def test_every_action_is_pinned_by_sha_with_its_release_in_a_comment() -> None:
    text = (REPO / ".github/workflows/ci.yml").read_text()
    found = list(USES.finditer(text))
    assert found
    for use in found:
        assert re.fullmatch(r"[0-9a-f]{40}", use["ref"]), use.group(0)
        assert re.fullmatch(r"\s+# v\d+(\.\d+){0,2}", use["comment"]), use.group(0)


def test_uv_is_installed_by_hash_everywhere() -> None:
    pinned = (REPO / "deploy/uv-requirements.txt").read_text()
    version = re.search(r"^uv==([\d.]+)", pinned, re.M)
    assert version is not None
    hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", pinned)
    assert len(hashes) >= 2
    makefile = (REPO / "Makefile").read_text()
    assert f"UV_VERSION := {version.group(1)}" in makefile
    for path in (REPO / "Makefile", REPO / "deploy/Dockerfile"):
        text = path.read_text()
        assert "--require-hashes" in text and "deploy/uv-requirements.txt" in text, path
        assert not re.search(r"pip install [^\n]*uv==", text), path


def test_ci_audits_the_lock_file() -> None:
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    runs = "\n".join(
        step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]
    )
    assert "uv export --frozen" in runs
    assert re.search(r"pip-audit [^\n]*--require-hashes", runs)
    assert "--strict" in runs


def test_dependabot_follows_uv_docker_compose_and_actions() -> None:
    config = yaml.safe_load((REPO / ".github/dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"] for u in config["updates"]}
    assert {"uv", "docker", "docker-compose", "github-actions"} <= ecosystems
    assert "pip" not in ecosystems  # uv.lock is the source of truth
