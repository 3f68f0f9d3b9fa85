"""Pytest plugin: real Dovecot, Postfix, Redis and PostgreSQL for the tests that need them.

Registered by the top-level conftest (``pytest_plugins = ["tests.servers.fixtures"]``).
Use the fixtures by name (a test that uses one gets its mark, ``FIXTURE_MARKS``)::

    def test_login(dovecot, mail_user):
        with imaplib.IMAP4(dovecot.host, dovecot.imap_port) as imap:
            imap.login(mail_user.email, mail_user.password)

    def test_delivery(postfix, dovecot, mail_user):
        with smtplib.SMTP(postfix.host, postfix.smtp_port) as smtp:
            smtp.sendmail("someone@elsewhere.test", [mail_user.email], message)

One instance of each per test process (so each pytest-xdist worker has its own, on its
own ports and in its own temporary directory), started on first use and stopped at the
end of the session; the logs and configs are kept in pytest's temporary directory
(``<basetemp>/dovecot-logs0``, ``postfix-logs0``). Without the packages the fixtures
skip, naming the install script (or fail, with ``REQUIRE_SERVERS=1``: tests/servers/require.py).

``redis_server`` is a Redis of our own per test process, for tests that flush or restart
it, ``redis_url`` one for a single test (a Celery broker); ``pg_url`` a fresh database on
the shared PostgreSQL for one test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import dovecot as dovecot_mod
from tests.servers import postfix as postfix_mod
from tests.servers import seaweedfs as seaweed_mod
from tests.servers.dovecot import DovecotServer, MailAccount
from tests.servers.oauth_provider import OAuthProvider
from tests.servers.postfix import PostfixServer
from tests.servers.postgres import pg_database, require_postgres
from tests.servers.redis import RedisServer
from tests.servers.require import server_missing
from tests.servers.seaweedfs import SeaweedServer

# The mark of each server fixture, given to every test that uses it (tests/marks.py).
FIXTURE_MARKS = {
    "dovecot": pytest.mark.dovecot,
    "postfix": pytest.mark.postfix,
    "redis_server": pytest.mark.redis,
    "redis_url": pytest.mark.redis,
    "pg_database": pytest.mark.postgres,
    "pg_url": pytest.mark.postgres,
}
# Domain of the accounts ``mail_user`` creates; Postfix delivers it to Dovecot.
MAIL_DOMAIN = "example.test"
# Files worth keeping after the session for a post-mortem (the rest is mail and queue).
LOG_GLOBS = ("*.log", "*.stderr", "*.conf", "*.conf.ext", "conf/*.cf")


@contextmanager
def server_root(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A directory for one server, removed afterwards; its logs go to pytest's tmp dir.

    Not inside pytest's own temporary tree: the servers' unprivileged users must be able
    to walk into it, and pytest resets its tree to 0700 whenever another session starts.
    Short, too, as Dovecot's unix sockets live in it.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    root = Path(tempfile.mkdtemp(prefix=f"email-service-{name}-{worker}-"))
    try:
        yield root
    finally:
        keep = tmp_path_factory.mktemp(f"{name}-logs")
        for pattern in LOG_GLOBS:
            for path in root.glob(pattern):
                shutil.copy(path, keep / path.name)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def oauth_provider() -> Iterator[OAuthProvider]:
    """A running OAuth2/OIDC authorization server (Authlib) on loopback."""
    provider = OAuthProvider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def dovecot(
    tmp_path_factory: pytest.TempPathFactory, oauth_provider: OAuthProvider
) -> Iterator[DovecotServer]:
    """A running Dovecot: IMAP/IMAPS/POP3 on loopback, LMTP and auth for Postfix.

    Passwords and OAuth2 bearer tokens of ``oauth_provider`` (XOAUTH2, OAUTHBEARER) log in.
    """
    reason = dovecot_mod.missing_reason()
    if reason:
        server_missing(reason)
    with server_root(tmp_path_factory, "dovecot") as root:
        server = DovecotServer(root, introspection_url=oauth_provider.introspection_url)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def postfix(
    dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostfixServer]:
    """A running Postfix delivering example.test and example2.test to ``dovecot``."""
    reason = postfix_mod.missing_reason()
    if reason:
        server_missing(reason)
    with server_root(tmp_path_factory, "postfix") as root:
        server = PostfixServer(root, dovecot)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> MailAccount:
    """A fresh account on ``dovecot`` (unique address, random password)."""
    email = f"user-{secrets.token_hex(6)}@{MAIL_DOMAIN}"
    return dovecot.add_user(email, secrets.token_urlsafe(12))


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A running SeaweedFS with S3 on loopback and the tests' bucket."""
    reason = seaweed_mod.missing_reason()
    if reason:
        server_missing(reason)
    with server_root(tmp_path_factory, "seaweedfs") as root:
        server = SeaweedServer(root)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(params=["files", "s3"])
def blob_backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings that keep blobs in DATA_DIR's files, or in SeaweedFS under a fresh prefix."""
    if request.param == "files":
        return {}
    server: SeaweedServer = request.getfixturevalue("seaweedfs")
    return {
        "blob_store_url": f"s3://{seaweed_mod.BUCKET}/{secrets.token_hex(6)}",
        "s3_endpoint_url": server.endpoint_url,
        "s3_access_key": server.access_key,
        "s3_secret_key": server.secret_key,
    }


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of our own (never the shared one: tests flush and restart it)."""
    reason = RedisServer.missing()
    if reason:
        server_missing(reason)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """The URL of a Redis of this test's own, started for it: a broker no other test (or
    other developer's run) shares, so no task of theirs is taken and no flush hits them."""
    reason = RedisServer.missing()
    if reason:
        server_missing(reason)
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database on the shared PostgreSQL for one test, dropped afterwards."""
    require_postgres()
    with pg_database(prefix="es_e2e") as url:
        yield url
