#!/usr/bin/env python3
"""Throughput of parse_message against the standard library on the same messages, one core.

    .venv/bin/python bench/parse_bench.py                   # 3,000 generated messages
    .venv/bin/python bench/parse_bench.py -n 10000 --repeat 5
    .venv/bin/python bench/parse_bench.py --dir ~/Maildir   # real messages (every file below)

Generated messages come from the realistic mix of ../shared/bench/gen_mailbox.py (text,
multipart/alternative newsletters, attachments of 50-500 KB); --gen points elsewhere.
Each contender runs over the whole set `--repeat` times and its best run counts:

- parse_message: headers, addresses, ids, date, text and HTML bodies, attachment list;
- policy.default: email.message_from_bytes(policy=default) + get_body() + get_content(),
  the usual way to get the same body (the limit this parser has to beat);
- compat32 parse: BytesParser(policy=compat32) building the tree only, decoding nothing.
"""

from __future__ import annotations

import argparse
import email
import email.parser
import email.policy
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from email_service.mail.mime.parse import parse_message

DEFAULT_GEN = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_mailbox.py"
FOLDERS = (("INBOX", 0.7), ("Archive", 0.2), ("Sent", 0.1))


def load_generator(path: Path) -> ModuleType:
    """Import gen_mailbox.py from its path (it is not part of this project)."""
    spec = importlib.util.spec_from_file_location("gen_mailbox", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated(count: int, seed: int, path: Path) -> list[bytes]:
    """Messages of the generator's realistic mix, folders in its default proportions."""
    gen = load_generator(path).Gen(seed)
    start = int(time.time()) - 3 * 365 * 86400
    out = []
    for n in range(count):
        folder = next(name for name, share in _cumulative() if (n % 100) / 100 < share)
        out.append(gen.message(folder, start + n * 3600)[0])
    return out


def _cumulative() -> Iterator[tuple[str, float]]:
    total = 0.0
    for name, share in FOLDERS:
        total += share
        yield name, total


def from_directory(root: Path, count: int) -> list[bytes]:
    """Up to `count` files below root (Dovecot's own index files skipped)."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and "dovecot" not in p.name)
    return [p.read_bytes() for _, p in zip(range(count), files, strict=False)]


def with_policy_default(raw: bytes) -> object:
    """What code using the modern API does to get the body."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return None
    try:
        return body.get_content()
    except (LookupError, UnicodeError):  # unknown charsets raise; decode by hand instead
        return body.get_payload(decode=True)


def with_compat32(raw: bytes) -> object:
    """The legacy parser building its tree, nothing decoded."""
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)


def best_time(fn: Callable[[bytes], object], messages: list[bytes], repeat: int) -> float:
    """Seconds of the fastest of `repeat` passes over all messages."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for raw in messages:
            fn(raw)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="messages (default 3000)")
    parser.add_argument("--dir", type=Path, help="read messages from files below this directory")
    parser.add_argument("--gen", type=Path, default=DEFAULT_GEN, help="path of gen_mailbox.py")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="passes per contender (best counts)")
    args = parser.parse_args()
    if args.dir:
        messages = from_directory(args.dir, args.n)
    else:
        messages = generated(args.n, args.seed, args.gen)
    if not messages:
        sys.exit("no messages")
    megabytes = sum(map(len, messages)) / 1e6
    parsed = [parse_message(raw) for raw in messages]
    errors = sum(1 for p in parsed if p.parse_error)
    print(f"{len(messages)} messages, {megabytes:.1f} MB, {errors} with parse_error, one core")
    contenders = (
        ("parse_message", parse_message),
        ("policy.default + get_body", with_policy_default),
        ("compat32 parse only", with_compat32),
    )
    seconds = {name: best_time(fn, messages, args.repeat) for name, fn in contenders}
    limit = seconds["policy.default + get_body"]
    print(f"{'contender':28} {'seconds':>8} {'msgs/s':>9} {'MB/s':>8} {'x policy.default':>17}")
    for name, spent in seconds.items():
        rate = len(messages) / spent
        print(f"{name:28} {spent:8.3f} {rate:9.0f} {megabytes / spent:8.1f} {limit / spent:17.1f}")


if __name__ == "__main__":
    main()
