"""bounces recorded on the outbox row, and the Message-ID index that finds the row

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

A delivery status notification (or a plain-text bounce) synced from a folder is linked to
its send by our envelope id, else by the original's Message-ID: ``bounces`` keeps what it
said per recipient; ``bounced`` is a new value of the ``state`` string column.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(
            sa.Column('bounces', _json(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table('outbox') as batch:
        batch.alter_column('bounces', server_default=None)
    op.create_index(
        'idx_outbox_tenant_message_id', 'outbox', ['tenant_id', 'message_id'], unique=False
    )


def downgrade() -> None:
    op.drop_index('idx_outbox_tenant_message_id', table_name='outbox')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('bounces')
