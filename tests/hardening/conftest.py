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

from tests.hardening.stack import FAST, SERVICE_GROUP, Service
from tests.servers.dovecot import DovecotServer, MailAccount
from tests.servers.fixtures import MAIL_DOMAIN
from tests.servers.postgres import app_login_url, pg_database, require_postgres
from tests.servers.redis import RedisServer

# Every test on the shared service is slow, runs on PostgreSQL, and runs on the one xdist
# worker that starts it (tests/marks.py; Redis and Dovecot marks come with their fixtures).
FIXTURE_MARKS = {"service": [pytest.mark.slow, pytest.mark.postgres, SERVICE_GROUP]}


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Service]:
    """`email-service serve` + `email-service worker` on PostgreSQL and our Redis, logged in
    as a role that owns no table and is no superuser: every answer passed the row-level
    security policies, as in the compose stack."""
    require_postgres()
    root = tmp_path_factory.mktemp("service")
    with pg_database() as url:
        login = app_login_url(url)
        svc = Service(root, login, owner_url=url, REDIS_URL=redis_server.url, **FAST)
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
