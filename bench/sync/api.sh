#!/usr/bin/env bash
# One timed run for the harness, through the running service (run.sh starts `serve` and a
# Celery worker): `full` adds the account to an emptied database with POST /api/accounts
# (which queues the first sync) and waits for the status `ok`; `incr` triggers a sync
# with POST /api/sync/imap/ID and `Prefer: wait` (one request, answered with the job's
# final status when it ends; the status is polled only if it is still running after the
# wait). curl only, so the figure is the service's, not an interpreter's start-up.
set -euo pipefail
: "${API:?}" "${TOKEN:?}" "${WORK:?}" "${API_DATABASE_URL:?}"
auth=(-H "Authorization: Bearer $TOKEN" -H "X-Tenant-ID: bench")
field() { grep -o "\"$1\": *\"\{0,1\}[^\",}]*" | head -1 | sed 's/.*: *"\{0,1\}//'; }  # first one

wait_for_job() {  # $1 account, $2 job id ("" for whichever sync ends first)
  while :; do
    status=$(curl -sf "${auth[@]}" "$API/api/sync/status/$1")
    state=$(field state <<<"$status")
    job=$(field job_id <<<"$status")
    case "$state" in
      ok) [ -z "$2" ] || [ "$job" = "$2" ] && return 0 ;;
      error | auth_failed) echo "sync ended in $state: $status" >&2 && return 1 ;;
    esac
    sleep 0.005
  done
}

if [ "$1" = full ]; then
  psql -q "$API_DATABASE_URL" -c "TRUNCATE email_account CASCADE"
  body=$(printf '{"email":"%s","password":"%s","imap_host":"%s","imap_port":%s,"imap_security":"none"}' \
    "$BENCH_USER" "$BENCH_PASS" "$IMAP_HOST" "$IMAP_PORT")
  account=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' -d "$body" \
    "$API/api/accounts" | field id)
  echo "$account" > "$WORK/account_id"
  wait_for_job "$account" ""
else
  account=$(cat "$WORK/account_id")
  answer=$(curl -sf "${auth[@]}" -H 'Prefer: wait=30' -X POST "$API/api/sync/imap/$account" \
    -w '\n%{http_code}')
  code=${answer##*$'\n'}  # 200: it ended within the wait (the body is its status)
  if [ "$code" = 200 ] && [[ $answer =~ \"state\":\ *\"ok\" ]]; then exit 0; fi
  [ "$code" = 202 ] || { echo "sync ended: $answer" >&2 && exit 1; }
  wait_for_job "$account" "$(field job_id <<<"$answer")"
fi
