#!/usr/bin/python3
"""The benchmark's 20 queries on notmuch (Xapian) over the same Maildir, in-process.

Runs under Debian's ``/usr/bin/python3`` with ``python3-notmuch2`` (the bindings are built
for it, not for the project's interpreter); bench_search.py calls it with ``--notmuch``:

    /usr/bin/python3 notmuch_search.py index MAILDIR DBDIR       # notmuch new, timed
    /usr/bin/python3 notmuch_search.py time DBDIR NOW RUNS PAGE  # JSON of samples per query

``time`` opens the database once and, per query and run, takes the newest ``PAGE``
messages with their Subject and From (what our page returns), as a client of notmuch
would. Where notmuch has no term for ours, the closest one is used and shown:
``larger:1M`` has no size prefix in notmuch and is left out. The Xapian database lives
in DBDIR, outside the Maildir, so that Dovecot does not list it as a folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Files Dovecot keeps in the Maildir, which are not mail.
IGNORE = (
    "dovecot-uidlist;dovecot-uidvalidity;dovecot.index;dovecot.index.cache;"
    "dovecot.index.log;dovecot.index.log.2;dovecot-keywords;maildirfolder;subscriptions"
)
WARM = 3


def queries(now: datetime) -> dict[str, str | None]:
    """Our query -> notmuch's (None: notmuch has no such term)."""
    month, year = now - timedelta(days=30), now - timedelta(days=365)
    jan, feb = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    return {
        "invoice": "invoice",
        "meeting budget": "meeting and budget",
        '"budget review"': '"budget review"',
        "from:alice": "from:alice",
        "from:example.com": "from:example.com",
        "to:olivia": "to:olivia",
        "subject:deadline": "subject:deadline",
        "has:attachment": "tag:attachment",
        "filename:pdf": "attachment:pdf",
        "is:unread": "tag:unread",
        "is:flagged": "tag:flagged",
        "in:sent": "folder:.Sent",
        "in:inbox invoice": 'folder:"" and invoice',
        "newer_than:30d": f"date:@{int(month.timestamp())}..",
        "after:2026-01-01 before:2026-02-01": (
            f"date:@{int(jan.timestamp())}..@{int(feb.timestamp()) - 1}"
        ),
        "larger:1M": None,
        "invoice OR payment": "invoice or payment",
        "budget -meeting": "budget and not meeting",
        "café OR zürich": "café or zürich",
        "from:alice has:attachment newer_than:1y": (
            f"from:alice and tag:attachment and date:@{int(year.timestamp())}.."
        ),
    }


def _config(dbdir: str) -> str:
    return str(Path(dbdir) / "notmuch-config")


def index(maildir: str, dbdir: str) -> None:
    """Write a config for MAILDIR with the database in DBDIR and run `notmuch new`.

    An index already made of the same Maildir with as many messages is kept (a 100,000
    message index takes about ten minutes): its time, recorded then, is printed again.
    """
    done = Path(dbdir) / "indexed.json"
    if done.exists():
        record = json.loads(done.read_text())
        if record["maildir"] == maildir and record["messages"] == _messages(maildir):
            print(json.dumps({"index_seconds": record["index_seconds"]}))
            return
    shutil.rmtree(Path(dbdir) / "db", ignore_errors=True)  # a fresh index, timed whole
    (Path(dbdir) / "db").mkdir(parents=True)
    Path(_config(dbdir)).write_text(
        f"[database]\npath={dbdir}/db\nmail_root={maildir}\n"
        "[new]\ntags=unread;inbox;\n"
        f"ignore={IGNORE}\n"
        "[maildir]\nsynchronize_flags=true\n"
    )
    env = {**os.environ, "NOTMUCH_CONFIG": _config(dbdir)}
    started = time.perf_counter()
    subprocess.run(["notmuch", "new", "--quiet"], env=env, check=True)
    spent = round(time.perf_counter() - started, 1)
    record = {"maildir": maildir, "messages": _messages(maildir), "index_seconds": spent}
    done.write_text(json.dumps(record))
    print(json.dumps({"index_seconds": spent}))


def _messages(maildir: str) -> int:
    """Mail files in the Maildir's cur/ and new/ folders."""
    return sum(1 for path in Path(maildir).rglob("*") if path.parent.name in {"cur", "new"})


def timed(dbdir: str, now: datetime, runs: int, page: int) -> None:
    """Print {query: {"notmuch": ..., "matches": n, "ms": [samples]}} as JSON."""
    import notmuch2

    db = notmuch2.Database(
        path=str(Path(dbdir) / "db"), mode=notmuch2.Database.MODE.READ_ONLY,
        config=_config(dbdir),
    )  # fmt: skip
    out: dict[str, dict[str, object]] = {}
    for ours, theirs in queries(now).items():
        if theirs is None:
            out[ours] = {"notmuch": None}
            continue

        def one(q: str = theirs) -> int:
            shown = 0
            for message in db.messages(q, sort=notmuch2.Database.SORT.NEWEST_FIRST):
                message.header("subject"), message.header("from")
                shown += 1
                if shown == page:
                    break
            return shown

        for _ in range(WARM):
            one()
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            one()
            samples.append((time.perf_counter() - started) * 1000)
        out[ours] = {"notmuch": theirs, "matches": db.count_messages(theirs), "ms": samples}
    db.close()
    print(json.dumps(out))


def main() -> None:
    """index MAILDIR DBDIR | time DBDIR NOW RUNS PAGE."""
    verb, *rest = sys.argv[1:]
    if verb == "index":
        index(*rest)
    else:
        dbdir, now, runs, page = rest
        timed(dbdir, datetime.fromisoformat(now), int(runs), int(page))


if __name__ == "__main__":
    main()
