"""partial indexes for unread and flagged mail, newest first

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

``is:unread``, ``is:flagged`` and a folder's unread list walk the tenant's messages by
date and skip the rest: in a mailbox with little unread mail that is nearly every row
(0.2 s when none of 100,000 qualify). These indexes hold only the rows they ask for. Their
predicates are the literal forms the queries compile to: ``seen = false`` is ``NOT seen``
to PostgreSQL's planner; SQLite matches the term as written (``seen = 0``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

NEWEST: list[sa.ColumnElement[Any]] = [
    sa.literal_column('received_date DESC'),
    sa.literal_column('id DESC'),
]
INDEXES = [
    ('idx_email_message_unread', ['tenant_id'], 'NOT seen', 'seen = 0'),
    ('idx_email_message_folder_unread', ['tenant_id', 'folder_id'], 'NOT seen', 'seen = 0'),
    ('idx_email_message_flagged', ['tenant_id'], 'flagged', 'flagged = 1'),
]


def upgrade() -> None:
    for name, columns, postgresql, sqlite in INDEXES:
        op.create_index(
            name,
            'email_message',
            [*columns, *NEWEST],
            unique=False,
            postgresql_where=sa.text(postgresql),
            sqlite_where=sa.text(sqlite),
        )


def downgrade() -> None:
    for name, *_ in reversed(INDEXES):
        op.drop_index(name, table_name='email_message')
