#!/usr/bin/env bash
# Sync benchmark: `email-service sync --foreground` into PostgreSQL, next to the raw IMAP
# fetch limit and mbsync, all measured in one run of the shared harness on one mailbox.
#
#   bench/sync/run.sh [N]        # N messages (default 10000); prints a markdown table
#
# Uses its own Dovecot (BENCH_DIR/IMAP_PORT below) and a throwaway PostgreSQL database on
# 127.0.0.1:5432; neither the system services nor the test instances are touched.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
harness="${HARNESS:-$repo/../shared/bench}"
make -C "$repo" --quiet install >&2  # the environment, with bytecode compiled
N="${1:-10000}"
export BENCH_DIR="${BENCH_DIR:-/tmp/email-service-syncbench}" IMAP_PORT="${IMAP_PORT:-10144}"
export PG_ADMIN="${PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/postgres}"
DB="es_syncbench"
export DATABASE_URL="${PG_ADMIN%/*}/$DB"
export FLASK_ENV=development JWT_SECRET="bench-jwt-$(printf 'k%.0s' {1..40})"
export ENCRYPTION_KEY="${ENCRYPTION_KEY:-$("$repo/.venv/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')}"
export ALLOWED_MAIL_HOSTS="127.0.0.1/8" LOG_LEVEL=WARNING
export EMAIL_SERVICE="$repo/.venv/bin/email-service"

bash "$harness/setup_dovecot.sh" install >&2
bash "$harness/setup_dovecot.sh" start >&2
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
DATA_DIR="$BENCH_DIR/ours-setup" "$EMAIL_SERVICE" migrate >&2

generate=()
count=$(find "$BENCH_DIR/mail" -path '*/cur/*' -type f 2>/dev/null | wc -l || true)
[ "$count" -ge "$N" ] || generate=(--generate "$N")
mkdir -p "$repo/bench/results"
out="$repo/bench/results/sync-$(date +%Y%m%d-%H%M%S).md"
python3 "$harness/bench_peers.py" "${generate[@]}" --skip offlineimap \
  --cmd-full "email-service sync --foreground (PostgreSQL)=bash $here/ours.sh full" \
  --cmd-incr "email-service sync --foreground (PostgreSQL)=bash $here/ours.sh incr" | tee "$out"
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
bash "$harness/setup_dovecot.sh" stop >&2
echo "table saved to $out" >&2
