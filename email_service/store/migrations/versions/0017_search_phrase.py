"""adjacent word pairs for phrases, filled after the sync (PostgreSQL)

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-07

``email_search_pair``: per message, a key for each adjacent token pair of its search
document (``store/search/pairs.py``), in a ``tsvector`` of lexemes without positions with
a GIN index, so that a phrase reads the few messages holding its pairs instead of checking
positions in every message holding its words. A ``tsvector`` rather than an array: its
``@@`` is LEAKPROOF here (migration 0013), so the index serves under the policies.

``email_search_pending``: messages whose pairs are not written yet. A statement trigger
notes every inserted message (one INSERT per statement, not per row: the sync's insert
path pays next to nothing) and a row trigger every changed ``search_text`` (a re-parse);
beat's ``index_search_pairs`` empties it in batches. No foreign key: a pending row whose
message is gone is simply dropped by the next batch.

Existing messages start pending. SQLite needs neither: FTS5 keeps positions in its index.
"""

from __future__ import annotations

from alembic import op

from email_service.store import rls

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None

UP = [
    """CREATE TABLE email_search_pair (
        message_id uuid PRIMARY KEY REFERENCES email_message (id) ON DELETE CASCADE,
        tenant_id varchar(64) NOT NULL,
        pairs tsvector NOT NULL)""",
    "CREATE INDEX idx_email_search_pair ON email_search_pair USING gin (pairs)",
    """CREATE TABLE email_search_pending (
        message_id uuid PRIMARY KEY,
        tenant_id varchar(64) NOT NULL)""",
    "INSERT INTO email_search_pending SELECT id, tenant_id FROM email_message",
    """CREATE FUNCTION email_search_pending_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO email_search_pending SELECT id, tenant_id FROM added_messages
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER email_search_pending_insert AFTER INSERT ON email_message
        REFERENCING NEW TABLE AS added_messages
        FOR EACH STATEMENT EXECUTE FUNCTION email_search_pending_added()""",
    """CREATE FUNCTION email_search_pending_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO email_search_pending VALUES (NEW.id, NEW.tenant_id) ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER email_search_pending_update AFTER UPDATE OF search_text ON email_message
        FOR EACH ROW WHEN (OLD.search_text IS DISTINCT FROM NEW.search_text)
        EXECUTE FUNCTION email_search_pending_changed()""",
]
DOWN = [
    "DROP TRIGGER IF EXISTS email_search_pending_update ON email_message",
    "DROP TRIGGER IF EXISTS email_search_pending_insert ON email_message",
    "DROP FUNCTION IF EXISTS email_search_pending_changed()",
    "DROP FUNCTION IF EXISTS email_search_pending_added()",
    "DROP TABLE IF EXISTS email_search_pending",
    "DROP TABLE IF EXISTS email_search_pair",
]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for statement in UP:
        op.execute(statement)
    for name in ("email_search_pair", "email_search_pending"):
        rls.protect(conn, name, rls.TENANT_WALL)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in DOWN:
        op.execute(statement)
