#!/usr/bin/env bash
# A new mailbox's first minutes: POST /api/accounts to the newest 50 INBOX messages listed
# and searchable, against `email-service serve` and a Celery worker (first_mail.py).
#
#   bench/sync/first_mail.sh [N]     # N messages (default 100000); prints a markdown table
#
# Uses the shared harness' Dovecot (its own BENCH_DIR and port, below), a throwaway
# PostgreSQL database on 127.0.0.1:5432 and Redis database 9 on 127.0.0.1:6379.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
harness="${HARNESS:-$repo/../shared/bench}"
make -C "$repo" --quiet install >&2
N="${1:-100000}"
export BENCH_DIR="${BENCH_DIR:-/tmp/email-service-firstmail}" IMAP_PORT="${IMAP_PORT:-10148}"
export PG_ADMIN="${PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/postgres}"
DB="es_firstmail"
export DATABASE_URL="${PG_ADMIN%/*}/$DB"
export REDIS_URL="${FIRSTMAIL_REDIS:-redis://127.0.0.1:6379/9}"
export CELERY_BROKER_URL="$REDIS_URL" CELERY_RESULT_BACKEND="$REDIS_URL"
export FLASK_ENV=development JWT_SECRET="bench-jwt-$(printf 'k%.0s' {1..40})"
export ENCRYPTION_KEY="${ENCRYPTION_KEY:-$("$repo/.venv/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')}"
export ALLOWED_MAIL_HOSTS="127.0.0.1/8" LOG_LEVEL=WARNING
export DATA_DIR="$BENCH_DIR/data" LOG_DIR="$BENCH_DIR/data/logs"

bash "$harness/setup_dovecot.sh" install >&2
bash "$harness/setup_dovecot.sh" start >&2
eval "$(bash "$harness/setup_dovecot.sh" env)"
count=$(find "$BENCH_MAILDIR" -path '*/cur/*' -type f 2>/dev/null | wc -l || true)
count=$((count + $(find "$BENCH_MAILDIR" -path '*/new/*' -type f 2>/dev/null | wc -l || true)))
if [ "$count" -ne "$N" ]; then
  "$repo/.venv/bin/python" "$harness/gen_mailbox.py" fill -n "$N" --clean --progress >&2
fi
redis-cli -u "$REDIS_URL" flushdb >/dev/null
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
"$repo/.venv/bin/email-service" migrate >&2
mkdir -p "$repo/bench/results"
out="$repo/bench/results/first-mail-$(date +%Y%m%d-%H%M%S).md"
{
  echo "## first sync of $N messages: POST /api/accounts to the newest mail (Dovecot $(dovecot --version | cut -d' ' -f1))"
  echo
  "$repo/.venv/bin/python" "$here/first_mail.py" --logs "$BENCH_DIR/logs"
} | tee "$out"
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
[ -n "${KEEP:-}" ] || bash "$harness/setup_dovecot.sh" stop >&2
echo "table saved to $out" >&2
