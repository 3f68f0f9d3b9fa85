#!/usr/bin/env bash
# Sync benchmark, next to the raw IMAP fetch limit and mbsync, all measured in one run of
# the shared harness on one mailbox: ours as users get it, through a running `serve` and
# Celery worker (api.sh: POST, then the status until `ok`), and as the command
# `email-service sync --foreground` (ours.sh, which pays an interpreter's start-up).
#
#   bench/sync/run.sh [N]        # N messages (default 10000); prints markdown tables
#
# Uses its own Dovecot (BENCH_DIR/IMAP_PORT below), a throwaway PostgreSQL database on
# 127.0.0.1:5432 and Redis databases 10 and 13 (handoff.py's floor) on 127.0.0.1:6379;
# neither the system services nor the test instances are touched. After the harness'
# table, handoff.py's medians of the no-change sync next to the Celery hand-off floor;
# then floors.py's two halves of the per-message work, each alone; then the worker's peak
# RSS.
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

# The running service: push off (only the syncs triggered here), one worker process.
export REDIS_URL="${SYNCBENCH_REDIS:-redis://127.0.0.1:6379/10}"
export CELERY_BROKER_URL="$REDIS_URL" CELERY_RESULT_BACKEND="$REDIS_URL"
export ENABLE_IMAP_PUSH=false SYNC_ON_CREATE=true RATE_LIMIT_ENABLED=false
export FLASK_HOST=127.0.0.1 FLASK_PORT="${API_PORT:-18732}" API="http://127.0.0.1:${API_PORT:-18732}"
export TOKEN="$("$repo/.venv/bin/python" -c 'import os; from email_service.security import tokens; print(tokens.mint(os.environ["JWT_SECRET"], ["bench"]))')"
export API_DATABASE_URL="${PG_ADMIN%/*}/${DB}_api"  # its own: ours.sh empties the other
redis-cli -u "$REDIS_URL" flushdb >/dev/null
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS ${DB}_api WITH (FORCE)" -c "CREATE DATABASE ${DB}_api"
mkdir -p -m 700 "$BENCH_DIR/service"
export DATA_DIR="$BENCH_DIR/service" LOG_DIR="$BENCH_DIR/service/logs"
DATABASE_URL="$API_DATABASE_URL" "$EMAIL_SERVICE" migrate >&2
DATABASE_URL="$API_DATABASE_URL" setsid "$EMAIL_SERVICE" serve >"$BENCH_DIR/service/serve.out" 2>&1 &
serve_pid=$!
DATABASE_URL="$API_DATABASE_URL" setsid "$EMAIL_SERVICE" worker --concurrency 1 \
  >"$BENCH_DIR/service/worker.out" 2>&1 &
worker_pid=$!
stop_service() { kill -TERM -- "-$serve_pid" "-$worker_pid" 2>/dev/null || true; }
trap stop_service EXIT
for _ in $(seq 600); do curl -sf "$API/health/ready" >/dev/null && break; sleep 0.2; done
sleep 3  # the worker's pool up
unset DATA_DIR LOG_DIR

generate=()
count=$(find "$BENCH_DIR/mail" -path '*/cur/*' -type f 2>/dev/null | wc -l || true)
[ "$count" -ge "$N" ] || generate=(--generate "$N")
mkdir -p "$repo/bench/results"
out="$repo/bench/results/sync-$(date +%Y%m%d-%H%M%S).md"
python3 "$harness/bench_peers.py" "${generate[@]}" --skip offlineimap \
  --cmd-full "ours: POST, then status ok (serve + worker)=bash $here/api.sh full" \
  --cmd-incr "ours: POST, then status ok (serve + worker)=bash $here/api.sh incr" \
  --cmd-full "email-service sync --foreground (PostgreSQL)=bash $here/ours.sh full" \
  --cmd-incr "email-service sync --foreground (PostgreSQL)=bash $here/ours.sh incr" | tee "$out"
# The no-change sync again, as medians from one persistent client, next to the Celery
# hand-off floor (handoff.py), while the service still runs.
account_file=$(ls "$BENCH_DIR"/work/extra-ours__POST*/account_id)
ACCOUNT_FILE="$account_file" "$repo/.venv/bin/python" "$here/handoff.py" 30 | tee -a "$out"
# The per-message work alone, on this mailbox: parsing inline, and PostgreSQL's ingest of
# exactly those rows (floors.py), while the service is idle.
DATABASE_URL="$API_DATABASE_URL" DATA_DIR="$BENCH_DIR/service" ACCOUNT_FILE="$account_file" \
  BENCH_MAILDIR="$BENCH_DIR/mail/example.test/bench/Maildir" \
  "$repo/.venv/bin/python" "$here/floors.py" 2000 | tee -a "$out"
{
  echo
  echo "worker peak RSS (VmHWM, MB): $(for p in $(pgrep -g "$worker_pid"); do
    awk '/VmHWM/ {printf "%.0f ", $2 / 1024}' "/proc/$p/status" 2>/dev/null; done)"
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
} | tee -a "$out"
stop_service
sleep 2
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
  -c "DROP DATABASE IF EXISTS ${DB}_api WITH (FORCE)"
bash "$harness/setup_dovecot.sh" stop >&2
echo "table saved to $out" >&2
