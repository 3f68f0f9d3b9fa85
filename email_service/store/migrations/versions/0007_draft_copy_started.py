"""whether a copy of a draft may be in the IMAP Drafts folder

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

A save job sets ``imap_copy_started`` (committed) before its first APPEND; a send then
looks for a copy to remove only when it is set. Existing drafts are marked: their copies
were made before the mark existed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('draft') as batch:
        batch.add_column(
            sa.Column('imap_copy_started', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(sa.text('UPDATE draft SET imap_copy_started = :yes').bindparams(yes=True))


def downgrade() -> None:
    with op.batch_alter_table('draft') as batch:
        batch.drop_column('imap_copy_started')
