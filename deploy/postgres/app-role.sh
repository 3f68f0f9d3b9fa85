#!/bin/sh
# The stack's PostgreSQL runs this once, when it initialises its data directory
# (/docker-entrypoint-initdb.d). POSTGRES_USER owns the tables and runs migrations; the
# services log in as POSTGRES_APP_USER, which owns nothing and may only switch to the two
# roles row-level security knows (email_service/store/rls.py): every row it reads or
# writes passes the tenant policies. Migration 0013 finds these roles and keeps them.
# Its password is the compose secret database_password, which the services read too.
set -eu
app_password="$(cat /run/secrets/database_password)"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_user="$POSTGRES_APP_USER" -v app_password="$app_password" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', name)
  FROM unnest(ARRAY['email_service_app', 'email_service_operator']) AS name
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE email_service_app, email_service_operator',
              :'app_user', :'app_password') \gexec
SQL
