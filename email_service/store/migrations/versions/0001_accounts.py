"""email_account: registered mailboxes with encrypted credentials

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from email_service.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_account",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("username", sa.String(length=320), nullable=False),
        sa.Column("password_ciphertext", sa.Text(), nullable=False),
        sa.Column("password_scheme", sa.String(length=16), nullable=False),
        sa.Column("password_key_id", sa.String(length=16), nullable=False),
        sa.Column("imap_host", sa.String(length=253), nullable=False),
        sa.Column("imap_port", sa.Integer(), nullable=False),
        sa.Column("imap_security", sa.String(length=8), nullable=False),
        sa.Column("smtp_host", sa.String(length=253), nullable=False),
        sa.Column("smtp_port", sa.Integer(), nullable=False),
        sa.Column("smtp_security", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_account")),
        sa.UniqueConstraint("tenant_id", "email", name="uq_email_account_tenant_email"),
    )
    op.create_index("idx_email_account_tenant", "email_account", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("idx_email_account_tenant", table_name="email_account")
    op.drop_table("email_account")
