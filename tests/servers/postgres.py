"""PostgreSQL for tests: throwaway databases on the shared server, and throwaway clusters.

The shared server (``TEST_PG_ADMIN_URL``, by default the one ``make services`` starts on
127.0.0.1:5432) gets a fresh database per use, dropped afterwards. A fault test that stops
and starts PostgreSQL under load gets a cluster of its own (:class:`PgCluster`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from email_service.store.rls import APP_ROLE, OPERATOR_ROLE
from tests.servers.ports import free_port
from tests.servers.process import GuardedServer
from tests.servers.require import server_missing

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Connecting on loopback takes milliseconds; this only bounds a dead server.
CONNECT_TIMEOUT_S = 5


def pg_problem(admin_url: str = PG_ADMIN_URL) -> str | None:
    """Why PostgreSQL at ``admin_url`` cannot be used, or None."""
    try:
        with psycopg.connect(admin_url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0]
        return f"PostgreSQL not reachable at {admin_url}: {first}; run `make services`"
    return None


def require_postgres(admin_url: str = PG_ADMIN_URL) -> None:
    """Skip (or fail with REQUIRE_SERVERS=1) unless PostgreSQL answers at ``admin_url``."""
    problem = pg_problem(admin_url)
    if problem:
        server_missing(problem)


@contextlib.contextmanager
def pg_database(admin_url: str = PG_ADMIN_URL, prefix: str = "es_test") -> Iterator[str]:
    """A fresh, empty database on ``admin_url``'s server, dropped (forcibly) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# A login that owns nothing and is no superuser, for services that must answer under the
# row-level security policies as a deployment's would (deploy/postgres/app-role.sh).
APP_LOGIN = "es_test_app_login"
_APP_LOGIN_SQL = f"""
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['{APP_ROLE}', '{OPERATOR_ROLE}', '{APP_LOGIN}'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END LOOP;
    ALTER ROLE {APP_LOGIN} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    GRANT {APP_ROLE}, {OPERATOR_ROLE} TO {APP_LOGIN};
END
$$
"""


def app_login_url(database_url: str) -> str:
    """``database_url`` logged in as :data:`APP_LOGIN` (made if missing; trust auth)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(_APP_LOGIN_SQL)
    scheme, rest = database_url.split("://", 1)
    return f"{scheme}://{APP_LOGIN}@{rest.split('@', 1)[1]}"


class PgCluster(GuardedServer):
    """A throwaway PostgreSQL cluster (initdb + pg_ctl as ``postgres``) on a free port.

    Never the shared server: a fault test stops and starts this one under load.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="es-test-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "pg.log"

    @staticmethod
    def missing() -> str | None:
        """Why no cluster can be made here, or None."""
        if not (Path(_pg_bin("initdb")).exists() and Path(_pg_bin("pg_ctl")).exists()):
            return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if os.geteuid() != 0:
            return "a throwaway PostgreSQL cluster is started as the postgres user: run as root"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres system user"
        return None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(argv)],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def init(self) -> None:
        """initdb with trust auth on loopback only."""
        owner = pwd.getpwnam("postgres")
        os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o700)
        self._as_postgres(
            _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        """pg_ctl start and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories="
            f"{self.root} -c fsync=off -c max_connections=200"
        )
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"'{options}'", "start",
        )  # fmt: skip
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        self._guard(os.getpgid(postmaster))  # the postmaster leads its own group

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (``fast`` cuts the sessions, ``immediate`` is a crash)."""
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )
        self._unguard()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return str(versions[-1] / name) if versions else name
