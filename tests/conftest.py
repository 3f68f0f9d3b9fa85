"""Shared fixtures: settings per backend (SQLite and the real PostgreSQL), app, tokens.

Every data test runs twice, once per backend (``backend`` parameter), and has two tenants.
PostgreSQL tests use a throwaway database per test session (and xdist worker), dropped at
the end; SQLite tests use a file in the test's temp dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from email_service.app import create_app
from email_service.config import Settings
from email_service.security import tokens
from email_service.security.crypto import generate_key
from email_service.services.runtime import Runtime
from email_service.store import migrate, scope
from email_service.store.models import Base
from email_service.store.search import pairs
from tests import marks
from tests.servers import postgres
from tests.servers.postgres import require_postgres

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
JWT_SECRET = "test-jwt-" + "k" * 40
TENANT_A, TENANT_B = "tenant-a", "tenant-b"
BACKENDS = ["sqlite", "postgres"]
# Real Dovecot, Postfix, Redis and PostgreSQL for the tests that need them (tests/servers/);
# pytester runs the suite's own plugins in a child session (tests/unit/test_require_servers.py).
SERVER_FIXTURES = "tests.servers.fixtures"
pytest_plugins = [SERVER_FIXTURES, "pytester"]


@pytest.fixture(autouse=True)
def test_code_is_operator() -> Iterator[None]:
    """A test's own code (seeding two tenants, reading rows back) crosses tenants: it runs
    in the operator scope. The code under test sets its own: each API request starts with
    none and takes its token's tenant, each job its tenant's, each operator path its own;
    tests/integration/test_rls.py runs those with no scope around them."""
    with scope.operator_scope("tests"):
        yield


def pytest_itemcollected(item: pytest.Item) -> None:
    """Give each test the marks of its folders and of the server fixtures it uses."""
    marks.apply(item, [item.config.pluginmanager.get_plugin(SERVER_FIXTURES)])


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, migrated to head."""
    require_postgres()
    with postgres.pg_database() as url:
        runtime = Runtime.build(_settings(Path("/tmp"), url))
        migrate.upgrade(runtime.db.engine)
        runtime.db.dispose()
        yield url


def _settings(data_dir: Path, database_url: str | None = None, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "flask_env": "development",
        "database_url": database_url,
        "redis_url": None,
        "jwt_secret": JWT_SECRET,
        "encryption_key": [generate_key()],
        "data_dir": data_dir,
        "log_dir": data_dir / "logs",
        "allowed_mail_hosts": ["127.0.0.1/8", "::1", "localhost"],
        "draft_copy_delay_seconds": 0,  # copies at once; test_draft_copy sets a delay
        # Tests start syncs themselves (after filling the mailbox); test_sync_api checks
        # the first sync a new account starts by default.
        "sync_on_create": False,
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def make_settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Any:
    """Build Settings for the test's backend; keyword arguments override fields."""

    def build(**extra: Any) -> Settings:
        if "database_url" not in extra:
            pg = backend == "postgres"
            extra["database_url"] = request.getfixturevalue("pg_database") if pg else None
        return _settings(tmp_path / "data", **extra)

    return build


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Any:
    """Build SQLite Settings for tests that need no second backend."""

    def build(**extra: Any) -> Settings:
        return _settings(tmp_path / "data", **extra)

    return build


@pytest.fixture
def settings(backend: str, make_settings: Any) -> Settings:
    """Settings for the current backend."""
    result: Settings = make_settings()
    return result


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    """The Flask app on a migrated database, emptied after the test."""
    application = create_app(settings, configure_logs=False)
    runtime: Runtime = application.extensions["email_service"]
    migrate.upgrade(runtime.db.engine)
    yield application
    with runtime.db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        if runtime.db.dialect == "postgresql":  # tables only migrations make (no models)
            for name in sorted(pairs.TABLES):
                conn.execute(text(f"DELETE FROM {name}"))
    runtime.db.dispose()


@pytest.fixture
def runtime(app: Any) -> Runtime:
    """The app's runtime (database, vault, settings)."""
    value: Runtime = app.extensions["email_service"]
    return value


@pytest.fixture
def client(app: Any) -> FlaskClient:
    """A test client."""
    test_client: FlaskClient = app.test_client()
    return test_client


def bearer(*tenants: str, secret: str = JWT_SECRET, **claims: Any) -> dict[str, str]:
    """Authorization header for a token granting ``tenants``."""
    return {"Authorization": f"Bearer {tokens.mint(secret, list(tenants), **claims)}"}


@pytest.fixture
def as_tenant() -> Any:
    """Headers acting as one tenant: ``as_tenant("tenant-a")``."""

    def headers(tenant: str) -> dict[str, str]:
        return {**bearer(tenant), "X-Tenant-ID": tenant}

    return headers
