#!/usr/bin/env bash
# Make sure the servers the tests talk to are installed and running; idempotent.
#   PostgreSQL on 127.0.0.1:5432 (trust auth for the local test user)
#   Redis on 127.0.0.1:6379
#   Dovecot and Postfix binaries (the tests run their own instances from deploy/)
# Without root, missing pieces are reported and the tests that need them skip.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PG_HOST="${TEST_PG_HOST:-127.0.0.1}"
PG_PORT="${TEST_PG_PORT:-5432}"
REDIS_PORT="${TEST_REDIS_PORT:-6379}"
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  is_root || { echo "ensure-services: not root, cannot install $*" >&2; return 1; }
  [ -n "${_apt_updated:-}" ] || { apt-get update -qq; _apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql || return 0
  fi
  local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
  if is_root; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
      || su postgres -c "pg_ctlcluster $version main start"
  fi
  for _ in $(seq 50); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break; sleep 0.2; done
  # trust auth for loopback, as the project's machines have it
  if ! psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -c 'select 1' >/dev/null 2>&1 && is_root; then
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  pg_isready -h "$PG_HOST" -p "$PG_PORT" || echo "ensure-services: PostgreSQL not available" >&2
}

ensure_redis() {
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
  command -v redis-server >/dev/null || apt_install redis-server || return 0
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || echo "ensure-services: Redis not available" >&2
}

ensure_postgres
ensure_redis
[ -x "$here/install-test-deps.sh" ] || [ -f "$here/install-test-deps.sh" ] && bash "$here/install-test-deps.sh"
exit 0
