"""full-text search: token document per message, GIN (PostgreSQL) and FTS5 (SQLite) indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

``email_message.search_text`` holds the token document built by the application
(``store.search_index.search_document``): a ``tsvector`` on PostgreSQL, text on SQLite.

PostgreSQL: a GIN index on it; and ``search_head``, generated: the lexemes of weight A,
i.e. the field-prefixed tokens of subject, addresses and file names (a few hundred bytes,
stored in the row), with its own GIN index, so that ``from:``/``subject:``... never read
the large body vector. No text search configuration or dictionary is involved: the tokens
are computed in Python, so both backends index the same words (accents kept).

SQLite: an FTS5 external-content table over ``email_message.search_text`` keyed by its
rowid, kept in step by triggers. FTS5's ``ascii`` tokenizer splits on the spaces only
(``_`` is a token character: field prefixes and the filler). A later migration that
rebuilds ``email_message`` in batch mode drops these triggers and may renumber rowids:
it must create the triggers again and run ``INSERT INTO email_search(email_search)
VALUES('rebuild')``.

Both: B-tree indexes for tenant-wide searches ordered by date, sizes, Message-ID lookups.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from email_service.store.pg_storage import compress_with_lz4
from email_service.store.search.index import SearchText

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SQLITE_UP = [
    """CREATE VIRTUAL TABLE email_search USING fts5(
        search_text, content='email_message', tokenize="ascii tokenchars '_'")""",
    """CREATE TRIGGER email_search_insert AFTER INSERT ON email_message BEGIN
        INSERT INTO email_search(rowid, search_text) VALUES (new.rowid, new.search_text);
    END""",
    """CREATE TRIGGER email_search_delete AFTER DELETE ON email_message BEGIN
        INSERT INTO email_search(email_search, rowid, search_text)
        VALUES ('delete', old.rowid, old.search_text);
    END""",
    """CREATE TRIGGER email_search_update AFTER UPDATE OF search_text ON email_message BEGIN
        INSERT INTO email_search(email_search, rowid, search_text)
        VALUES ('delete', old.rowid, old.search_text);
        INSERT INTO email_search(rowid, search_text) VALUES (new.rowid, new.search_text);
    END""",
    "INSERT INTO email_search(email_search) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS email_search_update",
    "DROP TRIGGER IF EXISTS email_search_delete",
    "DROP TRIGGER IF EXISTS email_search_insert",
    "DROP TABLE IF EXISTS email_search",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column('email_message',
                  sa.Column('search_text', SearchText(), nullable=False, server_default=''))
    compress_with_lz4('email_message', ['search_text'])
    op.create_index('idx_email_message_tenant_received', 'email_message',
                    ['tenant_id', sa.literal_column('received_date DESC'),
                     sa.literal_column('id DESC')], unique=False)
    op.create_index('idx_email_message_tenant_message_id', 'email_message',
                    ['tenant_id', 'message_id'], unique=False)
    op.create_index('idx_email_message_tenant_size', 'email_message', ['tenant_id', 'size'],
                    unique=False)
    if dialect == 'postgresql':
        op.execute("ALTER TABLE email_message ADD COLUMN search_head tsvector "
                   "GENERATED ALWAYS AS (ts_filter(search_text, '{a}')) STORED")
        op.create_index('idx_email_message_search', 'email_message', ['search_text'],
                        unique=False, postgresql_using='gin')
        op.create_index('idx_email_message_search_head', 'email_message', ['search_head'],
                        unique=False, postgresql_using='gin')
    elif dialect == 'sqlite':
        for statement in SQLITE_UP:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.drop_index('idx_email_message_search_head', table_name='email_message')
        op.drop_index('idx_email_message_search', table_name='email_message')
        op.drop_column('email_message', 'search_head')
    elif dialect == 'sqlite':
        for statement in SQLITE_DOWN:
            op.execute(statement)
    op.drop_index('idx_email_message_tenant_size', table_name='email_message')
    op.drop_index('idx_email_message_tenant_message_id', table_name='email_message')
    op.drop_index('idx_email_message_tenant_received', table_name='email_message')
    op.drop_column('email_message', 'search_text')
