#!/usr/bin/env python3
"""Full-body fetch of a whole mailbox: ImapSession.fetch_messages against the raw limit.

    cd ../shared/bench && ./setup_dovecot.sh install && ./setup_dovecot.sh start
    python3 gen_mailbox.py fill -n 10000 && eval "$(./setup_dovecot.sh env)"
    cd - && .venv/bin/python bench/imap_fetch_bench.py --repeat 5

Both clients run as their own process, alternately, on the same mailbox: the raw one is
../shared/bench/imap_raw.py (streaming parser that skips literals, sequence-range
batches); ours logs in, LISTs, and for every folder SELECTs, UID SEARCHes and streams
every message (bodies materialised, then dropped). Each row is the median inner wall
time (login to logout) of --repeat runs; `ratio` is msgs/s over the raw client's. Peak
RSS is the process's (Python itself is ~20 MB of it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from email_service.mail.imap.session import FETCH_BATCH, FETCH_PIPELINE, ImapSession

RAW_CLIENT = Path(__file__).resolve().parents[2] / "shared" / "bench" / "imap_raw.py"
# Loopback answers in microseconds; this only turns a dead server into an error.
TIMEOUT = 60.0


def fetch_everything(args: argparse.Namespace) -> dict[str, Any]:
    """One full fetch with ImapSession; counts, sizes and inner wall time."""
    started = time.perf_counter()
    msgs = size_sum = body_bytes = 0
    with ImapSession(
        args.host, args.port, args.security, args.user, args.password, timeout=TIMEOUT
    ) as session:
        folders = [f for f in session.list_folders(with_status=False) if f.selectable]
        for folder in folders:
            session.select_folder(folder.raw_name)
            uids = session.search_uids()
            for message in session.fetch_messages(uids, batch=args.batch, pipeline=args.pipeline):
                msgs += 1
                size_sum += message.size
                body_bytes += len(message.body)
    return {
        "msgs": msgs,
        "size_sum": size_sum,
        "bytes": body_bytes,
        "folders": len(folders),
        "wall_inner": time.perf_counter() - started,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_json(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def raw_command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        str(args.raw),
        "full",
        "--host", args.host,
        "--port", str(args.port),
        "--user", args.user,
        "--password", args.password,
        *args.raw_args.split(),
    ]  # fmt: skip


def ours_command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--worker",
        "--host", args.host,
        "--port", str(args.port),
        "--security", args.security,
        "--user", args.user,
        "--password", args.password,
        "--batch", str(args.batch),
        "--pipeline", str(args.pipeline),
    ]  # fmt: skip


def row(name: str, runs: list[dict[str, Any]], limit: float | None) -> tuple[str, float]:
    wall = statistics.median(r["wall_inner"] for r in runs)
    msgs, mb = runs[0]["msgs"], runs[0]["size_sum"] / 1e6
    rate = msgs / wall
    ratio = f"{rate / limit:.2f}x" if limit else "1.00x"
    rss = f"{max(r['rss_mb'] for r in runs):.0f}" if "rss_mb" in runs[0] else "-"
    walls = " ".join(f"{r['wall_inner']:.2f}" for r in runs)
    line = (
        f"| {name} | {msgs} | {mb:.1f} | {wall:.3f} ({walls}) | {rate:,.0f} | "
        f"{mb / wall:,.1f} | {rss} | {ratio} |"
    )
    return line, rate


def parse_args() -> argparse.Namespace:
    env = os.environ
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default=env.get("IMAP_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(env.get("IMAP_PORT", "10143")))
    ap.add_argument("--user", default=env.get("BENCH_USER", "bench@example.test"))
    ap.add_argument("--password", default=env.get("BENCH_PASS", "password"))
    ap.add_argument("--security", default="none", choices=["none", "starttls", "ssl"])
    ap.add_argument("--batch", type=int, default=FETCH_BATCH)
    ap.add_argument("--pipeline", type=int, default=FETCH_PIPELINE)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--raw", type=Path, default=RAW_CLIENT, help="path of imap_raw.py")
    ap.add_argument("--raw-args", default="", help='extra imap_raw.py options, e.g. "--pipeline 2"')
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(fetch_everything(args)))
        return
    raw_runs: list[dict[str, Any]] = []
    our_runs: list[dict[str, Any]] = []
    for _ in range(args.repeat):  # alternate, so drift in machine load hits both
        raw_runs.append(run_json(raw_command(args)))
        our_runs.append(run_json(ours_command(args)))
    if (raw_runs[0]["msgs"], raw_runs[0]["size_sum"]) != (
        our_runs[0]["msgs"],
        our_runs[0]["size_sum"],
    ):
        print(f"WARNING: different mailboxes seen: raw {raw_runs[0]} ours {our_runs[0]}")
    print(f"Full fetch, {args.host}:{args.port}, median of {args.repeat} (walls in brackets)\n")
    print("| client | msgs | MB | wall s | msgs/s | MB/s | peak RSS MB | vs raw |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    raw_line, raw_rate = row(
        f"raw imap_raw.py {args.raw_args or 'batch 500, pipeline 4'}", raw_runs, None
    )
    our_line, our_rate = row(
        f"ImapSession batch {args.batch}, pipeline {args.pipeline}", our_runs, raw_rate
    )
    print(raw_line)
    print(our_line)
    print(f"\nratio ImapSession / raw: {our_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
