"""deletions under way (an account's or a whole tenant's)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A row is written before a deletion removes anything and removed once its blobs are gone
too, so a deletion interrupted halfway is finished by the next sweep.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from email_service.store.models import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deletion',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('requested_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deletion'))
    )
    op.create_index('idx_deletion_tenant', 'deletion', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_index('idx_deletion_tenant', table_name='deletion')
    op.drop_table('deletion')
