"""``email-service accounts add --oauth PROVIDER``: onboarding without a front end.

Prints the provider's authorization URL, then waits for the browser's redirect: when
OAUTH_REDIRECT_URL points at a loopback address (RFC 8252 §7.3, what an operator's own
machine uses), this command listens there for that one request; otherwise it asks for
the address the browser ended on, pasted. Either way the same callback as the API's runs.
"""

from __future__ import annotations

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qsl, urlsplit

import click

from email_service.errors import EmailServiceError
from email_service.services.oauth import onboarding
from email_service.services.runtime import Runtime

# The operator has this long to consent in the browser.
WAIT_SECONDS = 600
# The subject the CLI's authorization requests are bound to.
CLI_SUBJECT = "cli"


def _loopback(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        is_loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback or parts.scheme != "http":
        return None
    return host, parts.port or 80


class _OneShot(HTTPServer):
    """Serves until the redirect to ``path`` arrived; its query is kept in ``query``."""

    def __init__(self, address: tuple[str, int], path: str) -> None:
        super().__init__(address, _Catcher)
        self.path = path
        self.query: dict[str, str] | None = None
        self.timeout = 1


class _Catcher(BaseHTTPRequestHandler):
    """Takes the one redirect."""

    server: _OneShot

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != self.server.path:
            self.send_error(404)
            return
        self.server.query = dict(parse_qsl(parts.query))
        body = b"Authorization received; you can close this window.\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """No access log: the query carries the authorization code."""


def _listen(server: _OneShot) -> dict[str, str]:
    stop = threading.Event()
    timer = threading.Timer(WAIT_SECONDS, stop.set)
    timer.start()
    try:
        while server.query is None and not stop.is_set():
            server.handle_request()
    finally:
        timer.cancel()
        server.server_close()
    if server.query is None:
        raise click.ClickException("no answer from the browser in time")
    return server.query


def _pasted() -> dict[str, str]:
    url = click.prompt("paste the address your browser was sent to", err=True)
    return dict(parse_qsl(urlsplit(url.strip()).query))


def add_with_oauth(runtime: Runtime, tenant: str, provider: str, login_hint: str | None) -> None:
    """Print the URL, wait for the consent, create (or renew) the account; print it."""
    try:
        started = onboarding.authorize(runtime, tenant, CLI_SUBJECT, provider, login_hint)
    except EmailServiceError as exc:
        raise click.ClickException(exc.message) from None
    redirect_url = runtime.settings.oauth_redirect_url or ""
    address = _loopback(redirect_url)
    server = None
    if address is not None:
        try:
            server = _OneShot(address, urlsplit(redirect_url).path)
        except OSError:  # the service itself listens there: paste instead
            server = None
    click.echo("open this address in a browser and allow access:", err=True)
    click.echo(started.authorization_url)
    query = _listen(server) if server is not None else _pasted()
    try:
        done = onboarding.callback(runtime, query, (tenant, CLI_SUBJECT))
    except EmailServiceError as exc:
        raise click.ClickException(exc.message) from None
    account = done.account
    checks = ", ".join(f"{name} {'ok' if c.ok else c.detail}" for name, c in done.checks.items())
    click.echo(f"{account.id}\t{account.email}\t{checks}")
