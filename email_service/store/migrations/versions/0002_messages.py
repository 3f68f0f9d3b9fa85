"""messages, folders, attachments, thread links, per-account sync state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from email_service.store.models import UTCDateTime
from email_service.store.pg_storage import compress_with_lz4

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_sync',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('lock_owner', sa.String(length=64), nullable=True),
    sa.Column('lock_expires_at', UTCDateTime(), nullable=True),
    sa.Column('queued_at', UTCDateTime(), nullable=True),
    sa.Column('started_at', UTCDateTime(), nullable=True),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.Column('last_success_at', UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('progress', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('messages_synced', sa.BigInteger(), nullable=False),
    sa.Column('bytes_synced', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['email_account.id'], name=op.f('fk_account_sync_account_id_email_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_account_sync'))
    )
    op.create_index('idx_account_sync_tenant', 'account_sync', ['tenant_id'], unique=False)
    op.create_table('mail_folder',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('raw_name', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('delimiter', sa.String(length=4), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('selectable', sa.Boolean(), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
    sa.Column('uidnext', sa.BigInteger(), nullable=True),
    sa.Column('highestmodseq', sa.BigInteger(), nullable=True),
    sa.Column('message_count', sa.Integer(), nullable=False),
    sa.Column('unread_count', sa.Integer(), nullable=False),
    sa.Column('synced_at', UTCDateTime(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['email_account.id'], name=op.f('fk_mail_folder_account_id_email_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_folder')),
    sa.UniqueConstraint('account_id', 'raw_name', name='uq_mail_folder_account_raw_name')
    )
    op.create_index('idx_mail_folder_tenant_account', 'mail_folder', ['tenant_id', 'account_id'], unique=False)
    op.create_table('email_message',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('folder_id', sa.Uuid(), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('modseq', sa.BigInteger(), nullable=True),
    sa.Column('message_id', sa.Text(), nullable=True),
    sa.Column('thread_id', sa.String(length=64), nullable=True),
    sa.Column('subject_key', sa.Text(), nullable=False),
    sa.Column('subject_orphan', sa.Boolean(), nullable=False),
    sa.Column('in_reply_to', sa.Text(), nullable=True),
    sa.Column('references', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('from_name', sa.Text(), nullable=True),
    sa.Column('from_email', sa.Text(), nullable=True),
    sa.Column('to_addrs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('cc_addrs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('bcc_addrs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('reply_to', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('sent_at', UTCDateTime(), nullable=True),
    sa.Column('received_date', UTCDateTime(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('flags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('seen', sa.Boolean(), nullable=False),
    sa.Column('flagged', sa.Boolean(), nullable=False),
    sa.Column('answered', sa.Boolean(), nullable=False),
    sa.Column('draft', sa.Boolean(), nullable=False),
    sa.Column('has_attachments', sa.Boolean(), nullable=False),
    sa.Column('snippet', sa.Text(), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=True),
    sa.Column('body_html', sa.Text(), nullable=True),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('blob_sha256', sa.String(length=64), nullable=False),
    sa.Column('parse_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['email_account.id'], name=op.f('fk_email_message_account_id_email_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['folder_id'], ['mail_folder.id'], name=op.f('fk_email_message_folder_id_mail_folder'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_message')),
    sa.UniqueConstraint('folder_id', 'uidvalidity', 'uid', name='uq_email_message_folder_uid')
    )
    op.create_index('idx_email_message_account', 'email_message', ['account_id'], unique=False)
    op.create_index('idx_email_message_list', 'email_message', ['tenant_id', 'folder_id', sa.literal_column('received_date DESC'), 'id'], unique=False)
    op.create_index('idx_email_message_message_id', 'email_message', ['account_id', 'message_id'], unique=False)
    op.create_index('idx_email_message_received', 'email_message', [sa.literal_column('received_date DESC')], unique=False)
    op.create_index('idx_email_message_subject_key', 'email_message', ['account_id', 'subject_key'], unique=False)
    op.create_index('idx_email_message_thread', 'email_message', ['account_id', 'thread_id'], unique=False)
    compress_with_lz4('email_message', ['body_text', 'body_html', 'headers', 'references'])
    op.create_table('attachment',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('part_index', sa.Integer(), nullable=False),
    sa.Column('filename', sa.Text(), nullable=True),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content_id', sa.Text(), nullable=True),
    sa.Column('is_inline', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['email_message.id'], name=op.f('fk_attachment_message_id_email_message'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachment'))
    )
    op.create_index('idx_attachment_message', 'attachment', ['message_id'], unique=False)
    op.create_table('thread_link',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('link_id', sa.Text(), nullable=False),
    sa.Column('thread_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['email_account.id'], name=op.f('fk_thread_link_account_id_email_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['message_id'], ['email_message.id'], name=op.f('fk_thread_link_message_id_email_message'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_thread_link'))
    )
    op.create_index('idx_thread_link_lookup', 'thread_link', ['account_id', 'link_id'], unique=False)
    op.create_index('idx_thread_link_message', 'thread_link', ['message_id'], unique=False)
    op.create_index('idx_thread_link_thread', 'thread_link', ['account_id', 'thread_id'], unique=False)


def downgrade() -> None:
    op.drop_index('idx_thread_link_thread', table_name='thread_link')
    op.drop_index('idx_thread_link_message', table_name='thread_link')
    op.drop_index('idx_thread_link_lookup', table_name='thread_link')
    op.drop_table('thread_link')
    op.drop_index('idx_attachment_message', table_name='attachment')
    op.drop_table('attachment')
    op.drop_index('idx_email_message_thread', table_name='email_message')
    op.drop_index('idx_email_message_subject_key', table_name='email_message')
    op.drop_index('idx_email_message_received', table_name='email_message')
    op.drop_index('idx_email_message_message_id', table_name='email_message')
    op.drop_index('idx_email_message_list', table_name='email_message')
    op.drop_index('idx_email_message_account', table_name='email_message')
    op.drop_table('email_message')
    op.drop_index('idx_mail_folder_tenant_account', table_name='mail_folder')
    op.drop_table('mail_folder')
    op.drop_index('idx_account_sync_tenant', table_name='account_sync')
    op.drop_table('account_sync')
