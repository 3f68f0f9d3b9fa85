#!/usr/bin/env python3
"""How soon a new mailbox is usable: POST /api/accounts to the newest INBOX mail listed.

    bench/sync/first_mail.sh [N]     # fills the harness' Dovecot, runs this, prints a table

Against a running `email-service serve` and Celery worker (started here, with push off,
so that only the first sync that POST /api/accounts queues is measured): the seconds from
the 201 of POST /api/accounts until the newest 50 INBOX messages (by UID, as IMAP reports
them) are (a) on the first page of GET /api/messages for INBOX and (b) on the first page of
GET /api/sync/search?query=in:inbox&order=date; then the seconds until the status says
`ok`, with its messages per second. The IMAP side is read before the POST (not timed).
Target: <= 3 s for (a) and (b).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from imapclient import IMAPClient

from email_service.security import tokens

TENANT = "bench"
PAGE = 50
TARGET_S = 3.0
POLL_S = 0.05
BIN = Path(sys.executable).parent


def main() -> None:
    """Start the service, add the account, time the first mail and the whole sync."""
    args = _args()
    expected = _newest_inbox(args)
    procs = [_spawn(args, "serve"), _spawn(args, "worker", "--concurrency", "2")]
    try:
        base = f"http://127.0.0.1:{args.port}"
        _wait_ready(base)
        time.sleep(3)  # the worker's pool up
        _measure(args, base, expected)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=18731)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the whole sync")
    parser.add_argument("--logs", default="/tmp/email-service-firstmail", help="process output")
    return parser.parse_args()


def _newest_inbox(args: argparse.Namespace) -> set[tuple[str, str]]:
    """(subject, sender) of the 50 highest UIDs in INBOX, as Dovecot has them."""
    with IMAPClient(os.environ["IMAP_HOST"], port=int(os.environ["IMAP_PORT"]), ssl=False) as c:
        c.login(os.environ["BENCH_USER"], os.environ["BENCH_PASS"])
        c.select_folder("INBOX", readonly=True)
        uids = sorted(c.search(["ALL"]))[-PAGE:]
        envelopes = c.fetch(uids, ["ENVELOPE"])
    return {_key_of_envelope(data[b"ENVELOPE"]) for data in envelopes.values()}


def _key_of_envelope(envelope: Any) -> tuple[str, str]:
    from email.header import decode_header, make_header

    subject = str(make_header(decode_header((envelope.subject or b"").decode())))
    sender = envelope.from_[0] if envelope.from_ else None
    address = f"{sender.mailbox.decode()}@{sender.host.decode()}" if sender else ""
    return " ".join(subject.split()), address.lower()


def _key_of_item(item: dict[str, Any]) -> tuple[str, str]:
    sender = (item.get("sender") or {}).get("email") or ""
    return " ".join(item["subject"].split()), sender.lower()


def _spawn(args: argparse.Namespace, *command: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLASK_PORT": str(args.port),
        "FLASK_HOST": "127.0.0.1",
        "ENABLE_IMAP_PUSH": "false",
        "SYNC_ON_CREATE": "true",
        "RATE_LIMIT_ENABLED": "false",
    }
    Path(args.logs).mkdir(parents=True, exist_ok=True)
    out = (Path(args.logs) / f"{command[0]}.out").open("wb")
    return subprocess.Popen(
        [str(BIN / "email-service"), *command],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/health/ready", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit("the service did not become ready (see --logs)")


def _measure(args: argparse.Namespace, base: str, expected: set[tuple[str, str]]) -> None:
    http = requests.Session()
    token = tokens.mint(os.environ["JWT_SECRET"], [TENANT])
    http.headers.update({"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT})
    body = {
        "email": os.environ["BENCH_USER"],
        "password": os.environ["BENCH_PASS"],
        "imap_host": os.environ["IMAP_HOST"],
        "imap_port": int(os.environ["IMAP_PORT"]),
        "imap_security": "none",
    }
    answer = http.post(f"{base}/api/accounts", json=body, timeout=30)
    created = time.monotonic()
    answer.raise_for_status()
    account = answer.json()["id"]
    seen = _until_listed(http, base, account, expected, created, args.timeout)
    status = _until_done(http, base, account, args.timeout)
    done = time.monotonic() - created
    _print(seen, status, done, len(expected))


def _until_listed(
    http: requests.Session,
    base: str,
    account: str,
    expected: set[tuple[str, str]],
    created: float,
    timeout: float,
) -> dict[str, float]:
    """Seconds after the POST at which the list and the search first show ``expected``."""
    seen: dict[str, float] = {}
    inbox = None
    while len(seen) < 2 and time.monotonic() - created < timeout:
        if inbox is None:
            inbox = _inbox_id(http, base, account)
        if inbox is not None and "list" not in seen:
            page = http.get(f"{base}/api/messages", params={"folder_id": inbox, "limit": PAGE})
            if expected <= {_key_of_item(item) for item in page.json().get("items", [])}:
                seen["list"] = time.monotonic() - created
        if "search" not in seen:
            params = {"query": "in:inbox", "order": "date", "limit": PAGE, "account_id": account}
            page = http.get(f"{base}/api/sync/search", params=params)
            found = page.json().get("items", []) if page.ok else []
            if expected <= {_key_of_item(hit) for hit in found}:
                seen["search"] = time.monotonic() - created
        time.sleep(POLL_S)
    return seen


def _inbox_id(http: requests.Session, base: str, account: str) -> str | None:
    folders = http.get(f"{base}/api/accounts/{account}/folders").json()["items"]
    return next((f["id"] for f in folders if f["role"] == "inbox"), None)


def _until_done(http: requests.Session, base: str, account: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"{base}/api/sync/status/{account}").json()
        if status["state"] in ("ok", "error", "auth_failed"):
            return status
        time.sleep(0.5)
    raise SystemExit("the first sync did not finish in time")


def _print(seen: dict[str, float], status: Any, done: float, wanted: int) -> None:
    print("| after POST /api/accounts | seconds | target |\n|---|---:|---:|")
    labels = {
        "list": "newest 50 INBOX on the list's first page",
        "search": "newest 50 INBOX found by `in:inbox` (date order)",
    }
    for what, label in labels.items():
        shown = f"{seen[what]:.2f}" if what in seen else "never"
        print(f"| {label} ({wanted} expected) | {shown} | <= {TARGET_S:.0f} |")
    rate = status["messages_synced"] / done if done else 0
    print(f"| whole first sync: state `{status['state']}`, {status['messages_synced']:,} "
          f"messages | {done:.1f} | ({rate:.0f} msg/s) |")  # fmt: skip
    print(f"\nload average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
