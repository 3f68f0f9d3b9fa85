"""row-level security: every tenant-owned table admits only the transaction's tenant

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

PostgreSQL only (SQLite has no row-level security). Tables are found, not listed: every
table with a ``tenant_id`` column gets the policies, so this revision covers tables made
by revisions before it whatever their number; a table made later gets its grants from the
default privileges set here and needs ``rls.protect(conn, name, rls.TENANT_WALL)`` in
its own revision
(tests/integration/test_rls.py fails until it has it). ``store/rls.py`` explains the roles.
"""

from __future__ import annotations

from alembic import op

from email_service.store import rls

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == 'postgresql':
        rls.protect_all(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != 'postgresql':
        return
    for table in rls.walls(conn):
        rls.unprotect(conn, table)
    op.execute('DROP FUNCTION IF EXISTS email_service_tenant()')
    # ts_match_vq stays LEAKPROOF if it was made so: harmless without policies.
    # The roles stay: they are the cluster's, and other databases may use them.
