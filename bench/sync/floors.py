"""The two halves of a full sync's per-message work, each alone, on the bench mailbox.

Run by ``run.sh`` after the harness, on the database its running service synced into:
``python floors.py [N]`` takes N messages of the harness' Maildir (default 2,000) and prints
a markdown table of

* ``prepare``: ``ingest.prepare`` as a Celery worker runs it (in its own process, inline:
  blob written, MIME parsed, search vector built), CPU of one core, best of three passes;
* PostgreSQL ingest: ``ingest.insert_batch`` of exactly those rows (our COPY, indexes,
  triggers, thread links, change log) in transactions of 200, as the sync's writer
  commits them, into a new copy of the account with one empty folder: rows/s by the
  wall clock, and by the server process's own CPU (what one core of PostgreSQL ingests).

A full sync on 2 cores needs both halves plus IMAP and the blob store's writes; mbsync
needs none of the first two. Environment: ``DATABASE_URL`` (the service's database),
``ACCOUNT_FILE`` (an account there), ``BENCH_MAILDIR`` (the harness' mailbox).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, text

from email_service.config import Settings
from email_service.mail.imap.types import FetchedMessage
from email_service.mail.mime.parse import Limits
from email_service.services.runtime import Runtime
from email_service.services.sync import ingest
from email_service.store.blobs import FileBlobStore
from email_service.store.models import Account, Folder
from email_service.store.scope import tenant_scope

BATCH = 200  # the engine's BATCH_MESSAGES
TICKS = os.sysconf("SC_CLK_TCK")


def _messages(count: int) -> list[FetchedMessage]:
    """``count`` messages spread over every folder of the mailbox."""
    root = Path(os.environ["BENCH_MAILDIR"])
    files = sorted(p for p in root.rglob("*") if p.parent.name == "cur" and p.is_file())
    now = datetime.now(UTC)
    return [
        FetchedMessage(uid, frozenset(), now, 0, None, path.read_bytes())
        for uid, path in enumerate(files[:: max(1, len(files) // count)][:count], start=1)
    ]


def _server_cpu(pid: int) -> float | None:
    """CPU seconds of a local PostgreSQL backend (None: not on this machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def _empty_copy(runtime: Runtime, account_id: uuid.UUID) -> tuple[str, uuid.UUID, uuid.UUID]:
    """A new account like ``account_id`` with one empty folder, so the rows are new to
    its threads as in a first sync: its tenant, id and folder."""
    copy = uuid.uuid4()
    with runtime.db.operator_session("bench: an empty copy of the account") as session:
        tenant = session.scalar(select(Account.tenant_id).where(Account.id == account_id))
        assert tenant is not None
        for statement in (
            "CREATE TEMP TABLE floor_account ON COMMIT DROP AS"
            " SELECT * FROM email_account WHERE id = :old",
            "UPDATE floor_account SET id = CAST(:new AS uuid),"
            " email = 'floor-' || :new || '-' || email",
            "INSERT INTO email_account SELECT * FROM floor_account",
        ):
            session.execute(text(statement), {"old": account_id, "new": str(copy)})
        folder = Folder(tenant_id=tenant, account_id=copy, raw_name="Floor", name="Floor")
        session.add(folder)
        session.flush()
        return tenant, copy, folder.id


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=2000)
    count = parser.parse_args().count
    messages = _messages(count)
    runtime = Runtime.build(Settings())
    account_id = uuid.UUID(Path(os.environ["ACCOUNT_FILE"]).read_text().strip())
    tenant, account_id, folder_id = _empty_copy(runtime, account_id)
    with tempfile.TemporaryDirectory(prefix="floors-") as scratch, tenant_scope(tenant):
        with runtime.db.session() as session:
            pid = session.scalar(text("SELECT pg_backend_pid()"))
        scope = {"tenant_id": tenant, "account_id": account_id, "folder_id": folder_id}
        scope["uidvalidity"] = 1
        best = float("inf")
        for attempt in range(3):
            blobs = FileBlobStore(Path(scratch) / str(attempt), fsync=False)
            started = time.process_time()
            rows = [ingest.prepare(m, scope, blobs, Limits(), True, True) for m in messages]
            best = min(best, time.process_time() - started)
        server_before, started = _server_cpu(pid), time.monotonic()
        for first in range(0, len(rows), BATCH):
            with runtime.db.session() as session:
                ingest.insert_batch(session, rows[first : first + BATCH])
        wall = time.monotonic() - started
        server_after = _server_cpu(pid)
    server = (
        f"{count / (server_after - server_before):,.0f}"
        if server_before is not None and server_after is not None and server_after > server_before
        else "n/a"
    )
    print(f"\nfloors ({count} messages of the bench mailbox, {datetime.now():%H:%M:%S}):\n")
    print("| half | msg/s |")
    print("|---|---|")
    print(f"| `prepare` inline, one core (CPU, best of 3) | {count / best:,.0f} |")
    print(f"| PostgreSQL ingest of those rows, wall (batches of {BATCH}) | {count / wall:,.0f} |")
    print(f"| PostgreSQL ingest, per core of the server's CPU | {server} |")


if __name__ == "__main__":
    main()
