"""revoked API tokens, by jti

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

``email-service token --revoke JTI`` writes here when the service runs without Redis (the
embedded default); rows past ``expires_at`` are no longer needed and are deleted by the
next revocation.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from email_service.store.models import UTCDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'revoked_token',
        sa.Column('jti', sa.String(128), nullable=False),
        sa.Column('revoked_at', UTCDateTime(), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('jti', name='pk_revoked_token'),
    )


def downgrade() -> None:
    op.drop_table('revoked_token')
