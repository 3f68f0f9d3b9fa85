"""Alembic environment: runs with the connection handed over by ``store.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from email_service.store.models import Base
from email_service.store.search.index import include_object

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Migrate over the connection in ``config.attributes``."""
    connection: Connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
        include_object=include_object,  # FTS5 tables and indexes the models cannot declare
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `email-service migrate`")
run_migrations_online()
