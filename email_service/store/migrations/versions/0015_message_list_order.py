"""a folder's message list in the index's order: id descending, as the list sorts

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

``idx_email_message_list`` was (tenant_id, folder_id, received_date DESC, id): the list
orders by ``received_date DESC, id DESC``, which no scan of that index gives, so a folder's
first page sorted every message of the folder (a top-N sort over 300 rows in bench/api,
over all of them in a large folder). With ``id DESC`` a page is an index range scan that
stops after the page, and a cursor's page starts where it points.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('idx_email_message_list', table_name='email_message')
    op.create_index(
        'idx_email_message_list',
        'email_message',
        ['tenant_id', 'folder_id', sa.literal_column('received_date DESC'), sa.literal_column('id DESC')],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('idx_email_message_list', table_name='email_message')
    op.create_index(
        'idx_email_message_list',
        'email_message',
        ['tenant_id', 'folder_id', sa.literal_column('received_date DESC'), 'id'],
        unique=False,
    )
