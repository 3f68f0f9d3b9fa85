"""drafts, uploaded attachments and the outbox (sending state machine)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from email_service.store.models import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ['account_id'], ['email_account.id'],
        name=op.f(f'fk_{table}_account_id_email_account'), ondelete='CASCADE',
    )


def upgrade() -> None:
    op.create_table('draft',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('to_addrs', _json(), nullable=False),
    sa.Column('cc_addrs', _json(), nullable=False),
    sa.Column('bcc_addrs', _json(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=True),
    sa.Column('body_html', sa.Text(), nullable=True),
    sa.Column('in_reply_to_id', sa.Uuid(), nullable=True),
    sa.Column('forward_of_id', sa.Uuid(), nullable=True),
    sa.Column('forward_mode', sa.String(length=16), nullable=True),
    sa.Column('reply_message_id', sa.Text(), nullable=True),
    sa.Column('references', _json(), nullable=False),
    sa.Column('forward_blob_sha256', sa.String(length=64), nullable=True),
    sa.Column('send_at', UTCDateTime(), nullable=True),
    sa.Column('outbox_id', sa.Uuid(), nullable=True),
    sa.Column('imap_uidvalidity', sa.BigInteger(), nullable=True),
    sa.Column('imap_uid', sa.BigInteger(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    _account_fk('draft'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draft'))
    )
    op.create_index('idx_draft_tenant_updated', 'draft', ['tenant_id', 'updated_at', 'id'],
                    unique=False)
    op.create_table('compose_attachment',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('draft_id', sa.Uuid(), nullable=True),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('blob_sha256', sa.String(length=64), nullable=False),
    sa.Column('content_id', sa.Text(), nullable=True),
    sa.Column('inline', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['draft.id'],
                            name=op.f('fk_compose_attachment_draft_id_draft'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compose_attachment'))
    )
    op.create_index('idx_compose_attachment_tenant', 'compose_attachment', ['tenant_id'],
                    unique=False)
    op.create_index('idx_compose_attachment_draft', 'compose_attachment', ['draft_id'],
                    unique=False)
    op.create_table('outbox',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('draft_id', sa.Uuid(), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('message_id', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('recipients', _json(), nullable=False),
    sa.Column('mime_blob_sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('send_at', UTCDateTime(), nullable=True),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', UTCDateTime(), nullable=True),
    sa.Column('last_smtp_code', sa.Integer(), nullable=True),
    sa.Column('last_smtp_reply', sa.Text(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('reconcile_checks', sa.Integer(), nullable=False),
    sa.Column('origin_message_id', sa.Uuid(), nullable=True),
    sa.Column('origin_flag', sa.String(length=16), nullable=True),
    sa.Column('sent_copy', sa.String(length=16), nullable=True),
    sa.Column('sent_copy_uid', sa.BigInteger(), nullable=True),
    sa.Column('queued_at', UTCDateTime(), nullable=False),
    sa.Column('sent_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    _account_fk('outbox'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name='uq_outbox_tenant_idempotency_key')
    )
    op.create_index('idx_outbox_tenant_created', 'outbox', ['tenant_id', 'created_at', 'id'],
                    unique=False)
    op.create_index('idx_outbox_tenant_draft', 'outbox', ['tenant_id', 'draft_id'], unique=False)
    op.create_index('idx_outbox_state_due', 'outbox', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('idx_outbox_state_due', table_name='outbox')
    op.drop_index('idx_outbox_tenant_draft', table_name='outbox')
    op.drop_index('idx_outbox_tenant_created', table_name='outbox')
    op.drop_table('outbox')
    op.drop_index('idx_compose_attachment_draft', table_name='compose_attachment')
    op.drop_index('idx_compose_attachment_tenant', table_name='compose_attachment')
    op.drop_table('compose_attachment')
    op.drop_index('idx_draft_tenant_updated', table_name='draft')
    op.drop_table('draft')
