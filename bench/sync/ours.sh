#!/usr/bin/env bash
# One timed run for the harness: `full` registers the account in an emptied database and
# syncs everything; `incr` re-syncs the same account. $WORK is the harness' per-tool dir.
set -euo pipefail
export DATA_DIR="$WORK" LOG_DIR="$WORK/logs"
if [ "$1" = full ]; then
  psql -q "$DATABASE_URL" -c "TRUNCATE email_account CASCADE"
  "$EMAIL_SERVICE" accounts add --tenant bench --email "$BENCH_USER" --password "$BENCH_PASS" \
    --imap-host "$IMAP_HOST" --imap-port "$IMAP_PORT" --imap-security none \
    | cut -f1 > "$WORK/account_id"
fi
exec "$EMAIL_SERVICE" sync "$(cat "$WORK/account_id")" --foreground --quiet
