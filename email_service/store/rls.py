"""PostgreSQL row-level security: the second wall between tenants, behind the tenant filter
every query carries (``store/tenancy.py``).

Roles (created by migration 0013, cluster-wide, NOLOGIN; the login role switches to them):

- ``APP_ROLE``: every transaction in a tenant scope, and one with no scope. The policy
  ``tenant_wall`` shows it the rows whose ``tenant_id`` is ``app.tenant_id`` and lets it
  write only such rows; with no tenant set, ``email_service_tenant()`` raises.
- ``OPERATOR_ROLE``: the audited operator scope (``store/scope.py``); ``operator_all`` lets
  it read and write every tenant's rows.
- the tables' owner (the login role that runs ``email-service migrate``): tables are
  ``FORCE``d, so it has no policy and sees no tenant row unless it is a superuser.

Each transaction starts as its scope: one statement sets the role and the tenant for the
connection's session, skipped when the connection's last scope was the same.
"""

from __future__ import annotations

from typing import Any

from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, text

from email_service.store.scope import Scope, ScopeKind

APP_ROLE = "email_service_app"
OPERATOR_ROLE = "email_service_operator"
TENANT_SETTING = "app.tenant_id"
# The policy condition of a table with a tenant_id column; a later migration that makes
# one calls ``protect(conn, table, TENANT_WALL)`` (tests/integration/test_rls.py checks).
TENANT_WALL = "tenant_id = email_service_tenant()"
# Tables without tenant_id whose rows belong to a tenant through a parent row:
# table -> (its column, the parent table it references by id).
CHILD_TABLES = {"thread_link": ("account_id", "email_account")}
# Tables that hold no tenant's rows (deployment-wide bookkeeping); no policy.
SHARED_TABLES = frozenset({"alembic_version", "change_log_horizon", "revoked_token"})

_ROLE_OF = {
    ScopeKind.NONE: APP_ROLE,
    ScopeKind.TENANT: APP_ROLE,
    ScopeKind.OPERATOR: OPERATOR_ROLE,
    ScopeKind.OWNER: "none",  # SET ROLE NONE: back to the login role
}
_SESSION_SCOPE = "email_service.session_scope"
_SET_SCOPE = "SELECT set_config('role', %s, %s), set_config('" + TENANT_SETTING + "', %s, %s)"


def apply_scope(dbapi_connection: Any, info: dict[str, Any], scope: Scope) -> None:
    """Run the transaction that starts on this connection as ``scope``.

    The values are set for the session, outside any transaction (autocommit for the one
    statement, before psycopg's BEGIN), so no rollback can undo them; ``info`` lives as
    long as the DBAPI connection and remembers them, so a connection whose last scope was
    this one costs no round trip at all. A connection already inside a transaction (not
    expected) gets values local to it instead, and nothing is remembered.
    """
    wanted = (_ROLE_OF[scope.kind], scope.tenant_id)
    if info.get(_SESSION_SCOPE) == wanted:
        return
    idle = dbapi_connection.info.transaction_status == TransactionStatus.IDLE
    if not idle:
        info.pop(_SESSION_SCOPE, None)
        _set(dbapi_connection, wanted, local=True)
        return
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        _set(dbapi_connection, wanted, local=False)
    finally:
        dbapi_connection.autocommit = autocommit
    info[_SESSION_SCOPE] = wanted


def _set(dbapi_connection: Any, wanted: tuple[str, str], local: bool) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(_SET_SCOPE, (wanted[0], local, wanted[1], local))


# The tenant the transaction acts for; raises when there is none, so that a query on a
# tenant table outside any scope fails loudly instead of returning nothing.
TENANT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION email_service_tenant() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    tenant text := current_setting('{TENANT_SETTING}', true);
BEGIN
    IF tenant IS NULL OR tenant = '' THEN
        RAISE EXCEPTION 'no tenant scope: a tenant table was queried outside '
            'tenant_scope/operator_scope (email_service/store/scope.py)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN tenant;
END
$$
"""


# Full-text search: a condition that is not LEAKPROOF cannot be an index condition below a
# policy, so ``search_text @@ query`` would scan the tenant's rows instead of the GIN index
# (measured: 1.5 ms -> 215 ms over 200,000 messages). ts_match_vq raises on no row's value
# and returns a boolean only; marking it LEAKPROOF (this database's catalog, superuser
# only) gives the index back. Without a superuser the migration leaves it and says so.
_SEARCH_LEAKPROOF = """
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF;
    ELSE
        RAISE WARNING 'ts_match_vq is not LEAKPROOF: full-text search under row-level '
            'security will not use its GIN indexes (docs/security.md)';
    END IF;
END
$$
"""


def create_roles(conn: Connection) -> None:
    """The two NOLOGIN roles (if missing), and the login role's right to switch to them."""
    for role in (APP_ROLE, OPERATOR_ROLE):
        conn.execute(text(_CREATE_ROLE.replace(":role", role)))


# Concurrent migrations of different databases on one cluster may race to create a role.
_CREATE_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ':role') THEN
        BEGIN
            CREATE ROLE ":role" NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT pg_has_role(current_user, ':role', 'MEMBER') THEN
        GRANT ":role" TO CURRENT_USER;
    END IF;
END
$$
"""


def grant(conn: Connection, schema: str) -> None:
    """DML on every table and sequence of ``schema``, now and for tables made later."""
    roles = f'"{APP_ROLE}", "{OPERATOR_ROLE}"'
    for statement in (
        f'GRANT USAGE ON SCHEMA "{schema}" TO {roles}',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {roles}',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {roles}',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" '
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {roles}",
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" '
        f"GRANT USAGE, SELECT ON SEQUENCES TO {roles}",
    ):
        conn.execute(text(statement))


def tenant_tables(conn: Connection) -> list[str]:
    """Every table of the current schema with a ``tenant_id`` column."""
    query = text(
        "SELECT c.table_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id'"
        " AND t.table_type = 'BASE TABLE' ORDER BY 1"
    )
    return list(conn.scalars(query))


def protect(conn: Connection, table: str, wall: str) -> None:
    """Enable and force RLS on ``table``: the app role sees rows where ``wall`` holds."""
    for statement in (
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS tenant_wall ON "{table}"',
        f'DROP POLICY IF EXISTS operator_all ON "{table}"',
        f'CREATE POLICY tenant_wall ON "{table}" TO "{APP_ROLE}" '
        f"USING ({wall}) WITH CHECK ({wall})",
        f'CREATE POLICY operator_all ON "{table}" TO "{OPERATOR_ROLE}" '
        "USING (true) WITH CHECK (true)",
    ):
        conn.execute(text(statement))


def unprotect(conn: Connection, table: str) -> None:
    """Undo :func:`protect`."""
    for statement in (
        f'DROP POLICY IF EXISTS tenant_wall ON "{table}"',
        f'DROP POLICY IF EXISTS operator_all ON "{table}"',
        f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
    ):
        conn.execute(text(statement))


def walls(conn: Connection) -> dict[str, str]:
    """Each tenant-owned table and its policy condition: tenant tables, then children."""
    found = dict.fromkeys(tenant_tables(conn), TENANT_WALL)
    for child, (column, parent) in CHILD_TABLES.items():
        found[child] = f'EXISTS (SELECT FROM "{parent}" p WHERE p.id = "{child}".{column})'
    return found


def protect_all(conn: Connection) -> list[str]:
    """Roles, grants, the tenant function and every tenant-owned table's policies."""
    create_roles(conn)
    grant(conn, conn.scalar(text("SELECT current_schema()")) or "public")
    conn.execute(text(TENANT_FUNCTION))
    conn.execute(text(_SEARCH_LEAKPROOF))
    tables = walls(conn)
    for table, wall in tables.items():
        protect(conn, table, wall)
    return sorted(tables)
