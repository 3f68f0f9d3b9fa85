"""After a deletion: leave no copy of deleted mail in the SQLite files.

SQLite connections run with ``secure_delete`` (store.db), so freed pages are zeroed; the
FTS5 index keeps a deleted document's terms in older segments until they are merged
(``optimize``), and the WAL keeps old page images until a checkpoint truncates it.
PostgreSQL needs none of this for its dumps (a deleted row is dead to every reader; a
VACUUM reclaims its space).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine


def scrub(engine: Engine) -> None:
    """Merge the search index and truncate the WAL (SQLite only; idempotent)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO email_search(email_search) VALUES ('optimize')"))
    with engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
