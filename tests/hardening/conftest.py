"""Fixtures of the hardening suite: the service as deployed (Gunicorn + Celery worker over
PostgreSQL and Redis), real Dovecot users, and two tenants.

``service`` is one running instance per pytest-xdist worker, shared by the tests that only
read or add their own data (mark them ``xdist_group(SERVICE_GROUP)`` so that one worker
starts it: a start costs some twenty seconds here); tests that need another configuration
(an empty allow-list, DEBUG logs, servers to restart) start their own ``Service``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.stack import FAST, RedisServer, Service, pg_database, pg_problem
from tests.servers.dovecot import DovecotServer, MailAccount
from tests.servers.fixtures import MAIL_DOMAIN


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of our own (never the shared one: tests flush and restart it)."""
    reason = RedisServer.missing()
    if reason:
        pytest.skip(reason)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Service]:
    """`email-service serve` + `email-service worker` on PostgreSQL and our Redis."""
    problem = pg_problem()
    if problem:
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("service")
    with pg_database() as url:
        svc = Service(root, url, REDIS_URL=redis_server.url, **FAST)
        try:
            svc.start(worker=True)
            yield svc
        finally:
            svc.stop()


def new_user(dovecot: DovecotServer, prefix: str = "user") -> MailAccount:
    """A fresh Dovecot login."""
    email = f"{prefix}-{secrets.token_hex(5)}@{MAIL_DOMAIN}"
    return dovecot.add_user(email, secrets.token_urlsafe(12))


@pytest.fixture
def fresh_user(dovecot: DovecotServer) -> Any:
    """Make Dovecot users: ``fresh_user()`` or ``fresh_user("prefix")``."""
    return lambda prefix="user": new_user(dovecot, prefix)


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory shared by the session's tests."""
    return tmp_path_factory.mktemp("hardening")
