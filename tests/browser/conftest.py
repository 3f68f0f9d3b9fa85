"""Browser tests: Debian's chromium driven by Playwright against a real ``email-service serve``.

Every test runs against two stacks, next to the project's Dovecot and Postfix
(tests/servers/): ``embedded``, what ``make run`` starts (one ``email-service serve``
subprocess, SQLite, in-process jobs), and ``celery``, as deployed (``serve`` and a Celery
``worker`` over PostgreSQL and a Redis of our own, tests/hardening/stack.py). Every screen
a test visits is saved as a PNG under ``$ARTIFACTS_DIR/web`` (default ``test-artifacts/web``,
git-ignored) and checked with axe-core (shipped by the ``axe-playwright-python`` package);
the figures of each check go to ``axe-<worker>.json`` beside the screenshots.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from tests.hardening import stack
from tests.servers.oauth_provider import OAuthProvider
from tests.servers.ports import free_ports
from tests.servers.postgres import pg_database, pg_problem
from tests.servers.process import kill_tree as stop
from tests.servers.redis import RedisServer
from tests.servers.require import server_missing
from tests.servers.service import BIN, base_env, cli, wait_http

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR") or ROOT / "test-artifacts") / "web"
# Impacts that fail a screen's accessibility check.
BLOCKING_IMPACTS = ("serious", "critical")
# A sync or a send through the real servers, on a loaded 2-core machine.
SERVER_WAIT_MS = 90_000


@dataclass
class Service:
    """A running service: ``name`` is the stack (``embedded`` or ``celery``)."""

    name: str
    base: str
    env: dict[str, str]
    # Origin of the embedded change stream (EVENTS_PORT); "" when there is none (celery:
    # the client finds no stream at /api/events and polls /api/changes).
    events: str = ""

    def dev_token(self, tenant: str) -> str:
        req = urllib.request.Request(
            self.base + "/web/dev-token",
            data=json.dumps({"tenant": tenant}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            return str(json.loads(response.read())["token"])

    def call(self, tenant: str, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self.dev_token(tenant)}",
                "X-Tenant-ID": tenant,
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"null")


@dataclass
class Canary:
    """A loopback HTTP server that records every path asked of it: outbound requests."""

    url: str
    hits: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        server_missing("Debian's chromium is not installed: run scripts/ensure-services.sh as root")
    return path


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


def _settings(postfix: Any) -> dict[str, str]:
    return {
        "ALLOWED_MAIL_HOSTS": "127.0.0.1/8,localhost",
        "MAIL_CA_FILE": str(postfix.ca_file),
        # The client polls and pages; the test drives it faster than a person would.
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "5000",
        "RATE_LIMIT_REQUESTS_PER_HOUR": "50000",
        "RATE_LIMIT_TENANT_REQUESTS_PER_MINUTE": "5000",
    }


# The test provider's name in OAUTH_PROVIDERS, and the label its button shows.
OAUTH_PROVIDER = "testidp"
OAUTH_LABEL = "Test IdP"


def _oauth(provider: OAuthProvider, dovecot: Any, postfix: Any, base: str) -> dict[str, str]:
    """OAUTH_* for the test provider, whose new client redirects to ``base``'s callback;
    its accounts log in to Dovecot (oauth2 passdb, introspection) and Postfix by token."""
    redirect = base + "/api/oauth/callback"
    client_id, secret = f"web-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    provider.add_client(client_id, secret, [redirect])
    conf = {
        "label": OAUTH_LABEL,
        "client_id": client_id,
        "client_secret": secret,
        "issuer": provider.issuer,
        "scopes": ["openid", "email", "mail", "offline_access"],
        "imap_host": "127.0.0.1",
        "imap_port": dovecot.imap_port,
        "imap_security": "starttls",
        "smtp_host": "127.0.0.1",
        "smtp_port": postfix.submission_port,
        "smtp_security": "starttls",
    }
    return {
        "OAUTH_PROVIDERS": json.dumps({OAUTH_PROVIDER: conf}),
        "OAUTH_REDIRECT_URL": redirect,
    }


def _embedded(root: Path, servers: tuple[Any, Any, OAuthProvider]) -> Iterator[Service]:
    dovecot, postfix, provider = servers
    env = base_env(root, **_settings(postfix))
    cli(env, "migrate")
    port, events_port = free_ports(2)
    env["FLASK_PORT"] = str(port)
    env["EVENTS_PORT"] = str(events_port)  # the embedded stream; 5001 may be another's
    env.update(_oauth(provider, dovecot, postfix, f"http://127.0.0.1:{port}"))
    proc = subprocess.Popen(
        [str(BIN / "email-service"), "serve"],
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health", proc)
        yield Service("embedded", base, env, events=f"http://127.0.0.1:{events_port}")
    finally:
        stop(proc)


def _celery(root: Path, servers: tuple[Any, Any, OAuthProvider]) -> Iterator[Service]:
    dovecot, postfix, provider = servers
    problem = pg_problem() or RedisServer.missing()
    if problem:
        server_missing(problem)
    redis = RedisServer(root / "redis")
    redis.start()
    try:
        with pg_database(prefix="es_web") as url:
            running = stack.Service(
                root / "service", url, REDIS_URL=redis.url, **_settings(postfix)
            )
            running.env.update(_oauth(provider, dovecot, postfix, running.base))
            try:
                running.start(worker=True)
                yield Service("celery", running.base, running.env)
            finally:
                running.stop()
    finally:
        redis.stop()


@pytest.fixture(
    scope="module",
    params=[
        "embedded",
        pytest.param("celery", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ],
)
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dovecot: Any,
    postfix: Any,
    oauth_provider: OAuthProvider,
) -> Iterator[Service]:
    """The service in development mode, allowed to reach the loopback mail servers, with
    the test OAuth2 provider configured."""
    root = tmp_path_factory.mktemp(f"web-{request.param}")
    start = _embedded if request.param == "embedded" else _celery
    yield from start(root, (dovecot, postfix, oauth_provider))


@pytest.fixture
def canary() -> Iterator[Canary]:
    found = Canary(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found.hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.end_headers()
            self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

        do_POST = do_GET  # noqa: N815 - the stdlib handler name

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


class Client:
    """One browser tab on the client, with what it logged and asked for."""

    def __init__(self, page: Page, service: Service, figures: dict[str, dict[str, Any]]) -> None:
        self.page = page
        self.base = service.base
        self.stack = service.name
        self.figures = figures
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def sign_in(self, tenant: str) -> None:
        self.page.goto(self.base + "/")
        self.page.get_by_label("Tenant").fill(tenant)
        self.page.get_by_role("button", name="Sign in (development)").click()
        self.page.locator("header.top").wait_for()

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.stack}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def check(self, name: str) -> dict[str, Any]:
        """Screenshot and axe-core check of the current screen; returns its figures."""
        self.shot(name)
        # Mail in the sandboxed frame is not ours (and runs no scripts for axe to use).
        results = Axe().run(self.page, options={"iframes": False, "resultTypes": ["violations"]})
        violations = results.response["violations"]
        counts = dict.fromkeys(("minor", "moderate", "serious", "critical"), 0)
        for violation in violations:
            counts[violation["impact"]] += len(violation["nodes"])
        figure = {
            "counts": counts,
            "rules": sorted({f"{v['id']} ({v['impact']})" for v in violations}),
            "nodes": sorted({str(n["target"]) for v in violations for n in v["nodes"]}),
        }
        self.figures[f"{self.stack}-{name}"] = figure
        return figure


@pytest.fixture(scope="session")
def axe_figures() -> Iterator[dict[str, dict[str, Any]]]:
    figures: dict[str, dict[str, Any]] = {}
    yield figures
    if figures:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (ARTIFACTS / f"axe-{worker}.json").write_text(json.dumps(figures, indent=2) + "\n")


@pytest.fixture
def open_client(
    browser: Browser, service: Service, axe_figures: dict[str, dict[str, Any]]
) -> Iterator[Callable[..., Client]]:
    contexts = []

    def make(width: int = 1280, height: int = 800) -> Client:
        context = browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        contexts.append(context)
        return Client(context.new_page(), service, axe_figures)

    yield make
    for context in contexts:
        context.close()


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 90) -> Any:
    """Poll ``condition`` until it is truthy; fail naming ``what`` when it never is."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"never happened: {what}")


def unexpected_console_errors(client: Client, allowed: tuple[str, ...] = ()) -> list[str]:
    """Console errors other than the resource failures a step provoked on purpose."""
    return [e for e in client.console_errors if not any(re.search(a, e) for a in allowed)]
