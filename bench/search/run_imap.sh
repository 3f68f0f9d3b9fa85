#!/usr/bin/env bash
# Search latency next to IMAP SEARCH on the same mailbox, in one run:
#
#   bench/search/run_imap.sh [N]     # N messages (default 100000); prints markdown tables
#
# 1. fills a Maildir with the shared harness' gen_mailbox.py (INBOX/Archive/Sent) and serves
#    it from the harness' throwaway Dovecot (its own BENCH_DIR and port, below);
# 2. syncs it with `email-service sync --foreground` into a throwaway PostgreSQL database
#    (timed, with peak RSS: the same pipeline as production, not generated rows);
# 3. pairs the stored messages' words for phrases (beat's job, timed), then
#    runs bench_search.py on that database with --imap and --notmuch: our search, the
#    message list, the HTTP route, the same 20 queries as UID SEARCH on the Dovecot, and on
#    notmuch (Xapian) indexing the same Maildir (Debian's notmuch + python3-notmuch2,
#    installed here if missing).
# Set KEEP=1 to keep the database and Maildir for another run (then it skips 1 and 2), and
# FILL_ONLY=1 to stop after the fill, the sync and notmuch's index (no timings: that part
# need not hold the benchmark lock). DB, BENCH_DIR and IMAP_PORT keep two sizes apart:
#   DB=es_searchbench_10k BENCH_DIR=/tmp/email-service-searchbench-10k IMAP_PORT=10146 \
#     KEEP=1 bench/search/run_imap.sh 10000
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
harness="${HARNESS:-$repo/../shared/bench}"
make -C "$repo" --quiet install >&2  # the environment, with bytecode compiled
N="${1:-100000}"
shift || true  # the rest goes to bench_search.py
export BENCH_DIR="${BENCH_DIR:-/tmp/email-service-searchbench}" IMAP_PORT="${IMAP_PORT:-10145}"
export PG_ADMIN="${PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/postgres}"
DB="${DB:-es_searchbench}"
export DATABASE_URL="${PG_ADMIN%/*}/$DB"
export FLASK_ENV=development JWT_SECRET="bench-jwt-$(printf 'k%.0s' {1..40})"
export ENCRYPTION_KEY="${ENCRYPTION_KEY:-$("$repo/.venv/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')}"
export ALLOWED_MAIL_HOSTS="127.0.0.1/8" LOG_LEVEL=WARNING DATA_DIR="$BENCH_DIR/data"
export LOG_DIR="$BENCH_DIR/data/logs"
py="$repo/.venv/bin/python"
es="$repo/.venv/bin/email-service"

bash "$harness/setup_dovecot.sh" install >&2
if ! /usr/bin/python3 -c 'import notmuch2' 2>/dev/null; then
  apt-get install -y -qq notmuch python3-notmuch2 >&2 \
    || { apt-get update -qq >&2 && apt-get install -y -qq notmuch python3-notmuch2 >&2; }
fi
bash "$harness/setup_dovecot.sh" start >&2
eval "$(bash "$harness/setup_dovecot.sh" env)"
mkdir -p "$repo/bench/results" "$DATA_DIR"
out="$repo/bench/results/search-imap-$(date +%Y%m%d-%H%M%S).md"

have=$(psql -qtAX "$DATABASE_URL" -c "SELECT count(*) FROM email_message" 2>/dev/null || echo 0)
if [ "$have" -lt "$N" ]; then
  count=$(find "$BENCH_MAILDIR" -path '*/cur/*' -type f 2>/dev/null | wc -l || true)
  if [ "$count" -ne "$N" ]; then
    "$py" "$harness/gen_mailbox.py" fill -n "$N" --clean --progress >&2
  fi
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  "$es" migrate >&2
  account=$("$es" accounts add --tenant bench --email "$BENCH_USER" --password "$BENCH_PASS" \
    --imap-host "$IMAP_HOST" --imap-port "$IMAP_PORT" --imap-security none | cut -f1)
  {
    echo "## sync of $N messages into PostgreSQL (email-service sync --foreground)"
    echo
    echo "Dovecot $(dovecot --version), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    /usr/bin/time -f '%e s wall, %U s user, %S s system, peak RSS %M KB' \
      "$es" sync "$account" --foreground --quiet 2>&1 | tail -1
    psql -qtAX "$DATABASE_URL" -c "SELECT count(*) || ' messages stored' FROM email_message"
    psql -qtAX "$DATABASE_URL" -c "VACUUM (ANALYZE) email_message"
  } | tee "$out"
fi

# A kept database may predate the pair tables; then beat's index_search_pairs, run to the
# end here (the service runs it every 30 s): phrases are timed with every message paired.
"$es" migrate >&2
{
  echo
  /usr/bin/time -f 'pairing the stored messages: %e s wall, %U s user (this process)' "$py" -c '
import os
from email_service.services.search import pair_stored_messages
from email_service.store.db import Database
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
print(pair_stored_messages(Database(url), budget_s=float("inf")), "messages paired")' 2>&1
} | tee -a "$out"
/usr/bin/python3 "$here/notmuch_search.py" index "$BENCH_MAILDIR" "$BENCH_DIR/notmuch" >&2
if [ -n "${FILL_ONLY:-}" ]; then
  echo "filled: $DB and $BENCH_MAILDIR (notmuch index in $BENCH_DIR/notmuch)" >&2
  exit 0
fi
"$py" "$here/bench_search.py" --database "$DB" --tenant bench --now now -n "$N" --noise 0 \
  --imap "imap://${BENCH_USER/@/%40}:$BENCH_PASS@$IMAP_HOST:$IMAP_PORT" \
  --notmuch "$BENCH_MAILDIR" --notmuch-db "$BENCH_DIR/notmuch" "$@" | tee -a "$out"
if [ -z "${KEEP:-}" ]; then
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
  bash "$harness/setup_dovecot.sh" stop >&2
fi
echo "tables saved to $out" >&2
