"""Migrations run up and down on both backends and match the models exactly."""

from __future__ import annotations

import contextlib
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from email_service.store import migrate
from email_service.store.db import Database
from email_service.store.models import Base
from email_service.store.search.index import include_object
from tests.servers.postgres import pg_database


def test_models_match_migrations(runtime: Any) -> None:
    with runtime.db.engine.connect() as conn:
        # the same filter as env.py: FTS5 tables and per-dialect indexes the models cannot hold
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_spec_indexes_exist(runtime: Any) -> None:
    names = {ix["name"] for ix in inspect(runtime.db.engine).get_indexes("email_account")}
    assert "idx_email_account_tenant" in names


def test_down_and_up_again(make_settings: Any, backend: str, tmp_path: Any) -> None:
    with contextlib.ExitStack() as stack:
        url = make_settings().sqlalchemy_url
        if backend == "postgres":  # a private database: the shared one stays at head
            private = stack.enter_context(pg_database(prefix="es_mig"))
            url = make_settings(database_url=private).sqlalchemy_url
        db = Database(url)
        stack.callback(db.dispose)
        migrate.upgrade(db.engine)
        assert migrate.current(db.engine) == migrate.head()
        migrate.downgrade(db.engine, "base")
        assert "email_account" not in inspect(db.engine).get_table_names()
        migrate.upgrade(db.engine)
        migrate.upgrade(db.engine)  # idempotent
        assert migrate.is_current(db.engine)
