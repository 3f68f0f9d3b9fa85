"""OAuth2 accounts: auth kind, encrypted tokens, refresh lease; onboarding states

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

``email_account.auth_kind`` is ``password`` (existing rows) or ``oauth2``. An OAuth2
account keeps no password: its tokens (access token, expiry, refresh token) are one
Fernet ciphertext in ``oauth_ciphertext`` with the id of the key that made it.
``oauth_refresh_until`` is the lease of the one process refreshing the tokens.
``oauth_state`` holds pending authorization requests (state hash, PKCE verifier encrypted).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from email_service.store.models import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('email_account') as batch:
        batch.add_column(
            sa.Column('auth_kind', sa.String(16), nullable=False, server_default='password')
        )
        batch.add_column(sa.Column('oauth_provider', sa.String(64), nullable=True))
        batch.add_column(sa.Column('oauth_ciphertext', sa.Text(), nullable=True))
        batch.add_column(sa.Column('oauth_key_id', sa.String(16), nullable=True))
        batch.add_column(sa.Column('oauth_refresh_until', UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('auth_error', sa.Text(), nullable=True))
        batch.alter_column('password_ciphertext', existing_type=sa.Text(), nullable=True)
        batch.alter_column('password_scheme', existing_type=sa.String(16), nullable=True)
        batch.alter_column('password_key_id', existing_type=sa.String(16), nullable=True)
    op.create_table(
        'oauth_state',
        sa.Column('state_hash', sa.String(64), nullable=False),
        sa.Column('tenant_id', sa.String(64), nullable=False),
        sa.Column('subject', sa.String(255), nullable=False),
        sa.Column('provider', sa.String(64), nullable=False),
        sa.Column('verifier_ciphertext', sa.Text(), nullable=False),
        sa.Column('nonce', sa.String(64), nullable=False),
        sa.Column('account_id', sa.Uuid(), nullable=True),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('state_hash', name=op.f('pk_oauth_state')),
    )
    op.create_index('idx_oauth_state_expires', 'oauth_state', ['expires_at'])


def downgrade() -> None:
    op.drop_index('idx_oauth_state_expires', table_name='oauth_state')
    op.drop_table('oauth_state')
    op.execute(sa.text("DELETE FROM email_account WHERE auth_kind = 'oauth2'"))
    with op.batch_alter_table('email_account') as batch:
        batch.alter_column('password_key_id', existing_type=sa.String(16), nullable=False)
        batch.alter_column('password_scheme', existing_type=sa.String(16), nullable=False)
        batch.alter_column('password_ciphertext', existing_type=sa.Text(), nullable=False)
        for name in (
            'auth_error',
            'oauth_refresh_until',
            'oauth_key_id',
            'oauth_ciphertext',
            'oauth_provider',
            'auth_kind',
        ):
            batch.drop_column(name)
