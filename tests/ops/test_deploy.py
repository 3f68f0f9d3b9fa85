"""The container image, compose stack, CI and docs, checked without a Docker engine.

The compose files parse and reference files that exist; every variable they give the
service is one Settings reads; every setting is in .env.example and docs/configuration.md;
the Dockerfile's build stage runs as a script in a clean virtual environment, downloading
from the package index (skipped only when the index cannot be reached from here).
(PyYAML comes with the dev dependencies, through schemathesis.)
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from email_service.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SCALE = REPO / "docker-compose.scale.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
APP_SERVICES = ("migrate", "email-service", "celery-worker", "celery-beat")
LONG_RUNNING = (
    "email-service",
    "celery-worker",
    "celery-beat",
    "postgres",
    "redis",
    "postfix",
    "dovecot",
)
# The documented port table (docs/deployment.md): service -> published "host:container" pairs.
SPEC_PORTS = {
    "email-service": {"5000:5000"},
    "postgres": {"5433:5432"},
    "redis": {"6379:6379"},
    "postfix": {"25:25"},
    "dovecot": {"143:143", "993:993", "110:110", "995:995"},
}
SETTINGS = {name.upper() for name in Settings.model_fields}
# Variables a Dockerfile ENV may set besides settings: the interpreter's own.
RUNTIME_ENV = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
# Where the build stage's pip and uv download from (uv.lock names the same registry).
PACKAGE_INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/"
# Bounds a probe of the index over a slow proxy; an answer takes well under a second.
PROBE_TIMEOUT_S = 30
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?:[:?\-][^}]*)?\}")


class ComposeLoader(yaml.SafeLoader):
    """YAML with the Compose spec's merge tags (!reset, !override)."""


def _tagged(loader: ComposeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _tagged)
ComposeLoader.add_constructor("!override", _tagged)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=ComposeLoader)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


def _published(entry: str) -> str:
    """'127.0.0.1:5433:5432' or '${API_PORT:-5000}:5000' -> '5433:5432' / '5000:5000'."""
    entry = INTERPOLATION.sub(lambda m: m.group(0).split(":-")[-1].rstrip("}"), entry)
    return ":".join(entry.split(":")[-2:])


# --- compose -------------------------------------------------------------------------


def test_compose_has_the_spec_services_on_one_bridge_network(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(LONG_RUNNING) <= set(services)
    assert compose["networks"]["emailclient-net"]["driver"] == "bridge"
    for name, service in services.items():
        assert service["networks"] == ["emailclient-net"], name


def test_compose_publishes_the_spec_ports(compose: dict[str, Any]) -> None:
    for name, ports in SPEC_PORTS.items():
        published = {_published(p) for p in compose["services"][name]["ports"]}
        assert ports <= published, (name, published)
    for internal in ("postgres", "redis"):  # data stores: the host's loopback only
        assert all(p.startswith("127.0.0.1:") for p in compose["services"][internal]["ports"])


def test_compose_healthchecks_and_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 3, name
    api = services["email-service"]["healthcheck"]
    assert (api["interval"], api["timeout"], api["retries"], api["start_period"]) == (
        "30s",
        "10s",
        3,
        "15s",
    )
    conditions = {
        "service_healthy",
        "service_completed_successfully",
    }
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert rule["condition"] in conditions, (name, dependency)
    api_deps = services["email-service"]["depends_on"]
    assert api_deps["postgres"]["condition"] == "service_healthy"
    assert api_deps["migrate"]["condition"] == "service_completed_successfully"


def test_compose_volumes_are_named_and_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared
    api_mounts = {m.split(":")[1] for m in compose["services"]["email-service"]["volumes"]}
    assert api_mounts == {"/app/logs", "/app/data"}


def test_compose_references_files_that_exist(compose: dict[str, Any]) -> None:
    scale = _load(SCALE)
    for document in (compose, scale):
        for name, service in document["services"].items():
            build = service.get("build")
            if build:
                context = REPO / build["context"]
                assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
            for mount in service.get("volumes", []):
                source = mount.split(":")[0]
                if source.startswith("."):
                    assert (REPO / source).exists(), (name, source)
    for secret in compose["secrets"].values():  # operator-made, outside git
        default = INTERPOLATION.sub(
            lambda m: m.group(0).split(":-")[-1].rstrip("}"), secret["file"]
        )
        assert default.startswith("./secrets/")
    assert "/secrets/" in (REPO / ".gitignore").read_text().split()


def test_compose_mail_servers_are_built_from_the_test_configs(compose: dict[str, Any]) -> None:
    for name, files in (
        ("dovecot", ["dovecot.conf", "compose.conf"]),
        ("postfix", ["main.cf", "master.cf", "compose.cf", "entrypoint.sh"]),
    ):
        context = REPO / compose["services"][name]["build"]["context"]
        dockerfile = (context / "Dockerfile").read_text()
        for file in files:
            assert (context / file).is_file() and file in dockerfile, (name, file)
    assert "!include ${BASE_CONF}" in (REPO / "deploy/dovecot/test.conf.in").read_text()
    assert "!include dovecot.conf" in (REPO / "deploy/dovecot/compose.conf").read_text()
    assert (
        'CMD ["dovecot", "-F", "-c", "/etc/dovecot/compose.conf"]'
        in (REPO / "deploy/dovecot/Dockerfile").read_text()
    )


def _app_environment(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in APP_SERVICES:
        found.update(compose["services"][name]["environment"])
    found.update(_load(SCALE)["services"]["email-service"]["environment"])
    return found


def test_every_variable_given_to_the_service_is_a_setting(compose: dict[str, Any]) -> None:
    unknown = set(_app_environment(compose)) - SETTINGS
    assert not unknown, f"compose sets variables the service never reads: {unknown}"
    env = _dockerfile_env(_stages(DOCKERFILE)["runtime"])
    assert not set(env) - SETTINGS - RUNTIME_ENV


def test_every_interpolated_variable_is_in_env_example() -> None:
    example = _env_example_names()
    for path in (COMPOSE, SCALE):
        used = set(INTERPOLATION.findall(path.read_text()))
        assert used <= example, f"{path.name}: not in .env.example: {used - example}"


def test_every_setting_is_in_env_example_and_the_docs() -> None:
    assert not SETTINGS - _env_example_names(), "missing from .env.example"
    readme = (REPO / "docs/configuration.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)`", readme, flags=re.M))
    rows |= {
        n
        for row in re.findall(r"^\| (`[A-Z0-9_]+`(?: / `[A-Z0-9_]+`)+)", readme, flags=re.M)
        for n in re.findall(r"`([A-Z0-9_]+)`", row)
    }
    assert not SETTINGS - rows, f"missing from docs/configuration.md: {SETTINGS - rows}"


def _env_example_names() -> set[str]:
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def test_scale_override_runs_three_replicas_behind_nginx_trusting_one_hop() -> None:
    scale = _load(SCALE)["services"]
    api = scale["email-service"]
    assert api["deploy"]["replicas"] == 3 and api["ports"] == []
    assert api["environment"]["TRUSTED_PROXIES"] == "1"
    assert scale["nginx"]["depends_on"]["email-service"]["condition"] == "service_healthy"
    conf = (REPO / "deploy/nginx/nginx.conf").read_text()
    assert "http://email-service:5000" in conf
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf  # appends; never replaces
    size = int(re.search(r"client_max_body_size (\d+)m;", conf).group(1))  # type: ignore[union-attr]
    assert size * 1024 * 1024 == Settings.model_fields["max_request_bytes"].default


# --- Dockerfile ------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in _instructions(path):
        if word == "FROM":
            current = stages.setdefault(rest.split(" AS ")[-1].strip(), [])
        current.append((word, rest))
    return stages


def _dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_dockerfile_is_multi_stage_non_root_with_the_spec_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.1[1-9]-slim", text, re.M)
    stages = _stages(DOCKERFILE)
    assert list(stages) == ["build", "runtime"]
    runtime = dict(stages["runtime"])
    assert "--uid 1000" in runtime["RUN"] and "--shell /sbin/nologin emailservice" in runtime["RUN"]
    assert runtime["USER"] == "emailservice"
    assert json.loads(runtime["VOLUME"]) == ["/app/logs", "/app/data"]
    assert runtime["ARG"].startswith("SERVICE_VERSION=")
    check = runtime["HEALTHCHECK"]
    for flag in ("--interval=30s", "--timeout=10s", "--start-period=15s", "--retries=3"):
        assert flag in check
    assert "/health" in check
    copies = [rest for word, rest in stages["runtime"] if word == "COPY"]
    assert "--from=build /app/.venv /app/.venv" in copies  # the build stage's environment
    assert json.loads(runtime["CMD"]) == ["email-service", "serve"]


def _dockerignore_admits(path: str) -> bool:
    admitted = True
    for line in (REPO / ".dockerignore").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        negate = line.strip().startswith("!")
        pattern = line.strip().lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            admitted = negate
    return admitted


def test_dockerfile_copies_only_what_the_context_admits() -> None:
    for word, rest in _instructions(DOCKERFILE):
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert _dockerignore_admits(source), f".dockerignore drops {source}"
    assert not _dockerignore_admits(".env") and not _dockerignore_admits("data/x.db")


def _copy(sources: list[str], target: str, workdir: Path) -> None:
    """COPY from the repository (the build context) into ``workdir``."""
    destination = workdir / target
    for source in sources:
        origin = REPO / source
        out = destination / origin.name if target.endswith("/") else destination
        out.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, out, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, out)


def _index_unreachable() -> str | None:
    """Why the package index cannot be reached from here (no network), or None.

    Any HTTP answer, an error status included, means the network is there.
    """
    try:
        with urllib.request.urlopen(PACKAGE_INDEX + "uv/", timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        return f"package index {PACKAGE_INDEX} unreachable: {exc}"


@pytest.mark.slow
def test_build_stage_runs_as_a_script_in_a_clean_venv(tmp_path: Path) -> None:
    """The build stage's ENV/WORKDIR/COPY/RUN, with / mapped to a temporary root."""
    unreachable = _index_unreachable()
    if unreachable:
        pytest.skip(unreachable)
    root = tmp_path / "root"
    base = tmp_path / "python"  # stands in for the base image's interpreter
    subprocess.run([sys.executable, "-m", "venv", str(base)], check=True)
    # The machine's network settings (proxy, CA bundle) stay; no trace of our own venv.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{base / 'bin'}:{os.environ['PATH']}"
    workdir = root
    for word, rest in _stages(DOCKERFILE)["build"]:
        mapped = rest.replace("/app", str(root / "app"))
        if word == "ENV":
            env.update(_dockerfile_env([(word, mapped)]))
        elif word == "WORKDIR":
            workdir = Path(mapped)
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, target = mapped.split()
            _copy(sources, target, workdir)
        elif word == "RUN":
            done = subprocess.run(
                ["bash", "-c", mapped],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode and (unreachable := _index_unreachable()):
                pytest.skip(f"the network went away during RUN {rest}: {unreachable}")
            assert done.returncode == 0, f"RUN {rest}\n{done.stderr[-3000:]}"
    venv = root / "app" / ".venv"
    version = subprocess.run(
        [str(venv / "bin" / "email-service"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "version" in version.stdout
    probe = (
        "import email_service.app, gunicorn, celery; import importlib.util as u; "
        "print(u.find_spec('pytest'))"
    )
    printed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True
    )
    assert printed.stdout.strip() == "None"  # dev dependencies stay out of the image


# --- CI and docs -------------------------------------------------------------------------


def test_ci_workflow_runs_make_test_with_the_pinned_actions() -> None:
    workflow = _load(REPO / ".github/workflows/ci.yml")
    text = (REPO / ".github/workflows/ci.yml").read_text()
    for action in (
        "actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803 # v6",
        "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae # v5",
        "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7",
        "github/codeql-action/init@8aad20d150bbac5944a9f9d289da16a4b0d87c1e # v4",
        "github/codeql-action/analyze@8aad20d150bbac5944a9f9d289da16a4b0d87c1e # v4",
    ):
        assert action in text, action
    uses = set(re.findall(r"uses: (\S+)", text))
    assert all(re.fullmatch(r"[0-9a-f]{40}", u.split("@")[1]) for u in uses)  # by commit
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert any(run.strip() == "make test" for run in steps)
    assert "make test" in (REPO / ".ci/run").read_text()


def test_dependabot_watches_uv_docker_compose_and_actions() -> None:
    config = _load(REPO / ".github/dependabot.yml")
    ecosystems = {
        u["package-ecosystem"]: u.get("directories") or [u["directory"]] for u in config["updates"]
    }
    assert {"uv", "docker", "docker-compose", "github-actions"} <= set(ecosystems)
    watched = {(REPO / d.lstrip("/") / "Dockerfile") for d in ecosystems["docker"]}
    dockerfiles = {
        DOCKERFILE,
        REPO / "deploy/dovecot/Dockerfile",
        REPO / "deploy/postfix/Dockerfile",
    }
    assert watched == dockerfiles and all(p.is_file() for p in watched)


def test_the_docs_have_the_operations_sections() -> None:
    readme = (REPO / "docs/deployment.md").read_text() + (REPO / "docs/operations.md").read_text()
    for heading in (
        "# Deployment",
        "## Scale-out",
        "## Backups",
        "## Upgrade",
        "## Log rotation",
        "## Production checklist",
        "## Troubleshooting",
        "## Metrics",
        "## Logs",
    ):
        assert heading in readme, heading
    assert "pg_dump" in readme and "docker-compose.scale.yml" in readme
