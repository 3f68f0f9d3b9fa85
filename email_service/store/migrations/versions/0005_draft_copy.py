"""which version of a draft its copy in the IMAP Drafts folder holds

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from email_service.store.models import UTCDateTime

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('draft') as batch:
        batch.add_column(sa.Column('imap_saved_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('draft') as batch:
        batch.drop_column('imap_saved_at')
