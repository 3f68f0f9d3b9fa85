"""Run Alembic migrations programmatically (``email-service migrate``, tests, ``make run``),
as the login role that owns the tables (``store/scope.py``'s owner scope)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from email_service.store.scope import owner_scope

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every process that migrates.
PG_ADVISORY_LOCK_ID = 0x656D6C73  # "emls"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema; concurrent callers on PostgreSQL take turns (advisory lock)."""
    cfg = _config()
    with owner_scope(), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_ADVISORY_LOCK_ID})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to ``revision``."""
    cfg = _config()
    with owner_scope(), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with owner_scope(), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    """True if the schema is at head; raises if the database does not answer."""
    with owner_scope(), engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()


@cache
def head() -> str | None:
    """The newest revision shipped with the code (read once per process)."""
    return ScriptDirectory.from_config(_config()).get_current_head()
