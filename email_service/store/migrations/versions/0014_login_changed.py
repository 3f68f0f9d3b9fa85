"""when an account's login last changed by an edit (not by a token refresh)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

``email_account.login_changed_at`` moves when the account's owner changes what it logs in
with or where: password, OAuth2 tokens given by the application or a new consent,
username, IMAP host, port or security. A token refresh, a key rotation, a status change
or the refresh lease leave it alone. The push watcher restarts an account's connection
when it moves. Existing rows start from ``updated_at``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from email_service.store.models import UTCDateTime

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('email_account') as batch:
        batch.add_column(sa.Column('login_changed_at', UTCDateTime(), nullable=True))
    op.execute(sa.text('UPDATE email_account SET login_changed_at = updated_at'))
    with op.batch_alter_table('email_account') as batch:
        batch.alter_column('login_changed_at', existing_type=UTCDateTime(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('email_account') as batch:
        batch.drop_column('login_changed_at')
