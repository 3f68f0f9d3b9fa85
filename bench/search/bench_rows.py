"""Rows of a realistic benchmark mailbox, written straight into PostgreSQL with COPY.

Text comes from the generator of ../shared/bench/gen_mailbox.py (its word list, people,
paragraphs and attachment types), so the words, names and sizes look like its Maildir
messages; no MIME is built or parsed. Each message gets its token document from
``search_index.search_document``, exactly as the application stores it.

Dates grow with the message number, as in gen_mailbox.py's Maildir (written in time
order) and in any mailbox a sync stores: UIDs follow arrival, and a sync inserts in UID
order. The table's physical order therefore follows ``received_date``, as it does in a
synced database, and a walk of the date index reads neighbouring rows.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from multiprocessing import Pool
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Column

from email_service.store.models import Attachment, Message
from email_service.store.search.index import search_document, to_tsvector_text

GEN_PATH = Path(__file__).resolve().parents[3] / "shared" / "bench" / "gen_mailbox.py"
# Folder shares of the generator's Maildir (INBOX 70 %, Archive 20 %, Sent 10 %).
FOLDERS = (("INBOX", "inbox", 0.70), ("Archive", "archive", 0.90), ("Sent", "sent", 1.0))
# Messages per worker task: big enough to amortise the pickling, small enough to stream.
CHUNK = 2_000
# Dates spread over two years before the benchmark's fixed "now".
SPAN_DAYS = 730


def load_generator() -> ModuleType:
    """Import gen_mailbox.py from its path (it is not part of this project)."""
    spec = importlib.util.spec_from_file_location("gen_mailbox", GEN_PATH)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot import {GEN_PATH}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _defaults(table: Any) -> dict[str, Any]:
    """Column defaults of the model, for the columns the generator does not set."""
    values: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if default is None:
            values[column.name] = None
        elif default.is_scalar:
            values[column.name] = default.arg
        elif default.is_callable:
            values[column.name] = default.arg(None)
    return values


def _copy_value(column: Column[Any], value: Any) -> Any:
    if value is not None and isinstance(column.type, JSON):
        return Jsonb(value)
    return value


class Chunk:
    """One worker task: messages [start, stop) of a tenant's mailbox."""

    def __init__(
        self, tenant: str, ids: dict[str, Any], start: int, stop: int, count: int, now: datetime
    ) -> None:
        self.tenant, self.ids, self.start, self.stop, self.now = tenant, ids, start, stop, now
        self.count = count  # messages in the whole mailbox: message n is the n-th to arrive

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Message rows and attachment rows of this chunk."""
        module = load_generator()
        gen = module.Gen(self.start * 7919 + len(self.tenant))
        r = random.Random(self.start)
        messages, attachments = [], []
        for n in range(self.start, self.stop):
            row, files = _message(module, gen, r, self, n)
            messages.append(row)
            for index, (name, size) in enumerate(files, start=2):
                attachments.append({"id": uuid.uuid4(), "tenant_id": self.tenant,
                                    "message_id": row["id"], "part_index": index,
                                    "filename": name, "content_type": "application/octet-stream",
                                    "size": size, "is_inline": False})  # fmt: skip
        return messages, attachments


def _message(
    module: ModuleType, gen: Any, r: random.Random, chunk: Chunk, n: int
) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    share = r.random()
    folder = next(name for name, _, cut in FOLDERS if share < cut)
    owner = ("Bench User", "bench@example.test")
    sender = owner if folder == "Sent" else r.choice(gen.people)
    to = [] if folder == "Sent" else [owner]
    to += r.sample(gen.people, r.randint(0 if to else 1, 2))
    cc = r.sample(gen.people, r.randint(1, 4)) if r.random() < 0.3 else []
    topic = " ".join(r.choices(module.WORDS, k=r.randint(3, 8))).capitalize()
    subject = ("Re: " if r.random() < 0.4 else "[Newsletter] " if r.random() < 0.12 else "") + topic
    body = gen.text_body(r.randint(1200, 7000))
    html = gen.html_body(body, r.randint(11000, 15000)) if r.random() < 0.35 else None
    files = []
    if r.random() < 0.10:
        for _ in range(1 if r.random() < 0.8 else 2):
            _, ext = r.choice(module.ATT_TYPES)
            files.append((f"{r.choice(module.WORDS)}_{r.randint(1000, 9999)}.{ext}",
                          r.randint(50_000, 500_000)))  # fmt: skip
    x = r.random()
    flags = ["\\Seen"] if folder == "Sent" or x >= 0.13 else []
    flags += ["\\Flagged"] if 0.13 <= x < 0.16 else ["\\Answered"] if 0.16 <= x < 0.30 else []
    # Message n arrives in the n-th of ``count`` equal slices of the span, at a random
    # moment inside it: the same share of mail per day as before, in arrival order.
    step = SPAN_DAYS * 86400 / chunk.count
    inside = r.randint(0, SPAN_DAYS * 86400) / (SPAN_DAYS * 86400)
    received = chunk.now - timedelta(seconds=(chunk.count - n - inside) * step)
    row = {
        "id": uuid.uuid4(), "tenant_id": chunk.tenant, "account_id": chunk.ids["account"],
        "folder_id": chunk.ids[folder], "uid": n + 1, "uidvalidity": 1,
        "message_id": f"<{n:x}.{r.getrandbits(40):x}@{sender[1].split('@')[1]}>",
        "subject": subject, "from_name": sender[0], "from_email": sender[1],
        "to_addrs": [{"name": a, "email": b} for a, b in to],
        "cc_addrs": [{"name": a, "email": b} for a, b in cc], "bcc_addrs": [],
        "received_date": received, "sent_at": received,
        "size": len(body) + len(html or "") + sum(size * 4 // 3 for _, size in files) + 2500,
        "flags": flags, "seen": "\\Seen" in flags, "flagged": "\\Flagged" in flags,
        "answered": "\\Answered" in flags, "has_attachments": bool(files),
        "snippet": " ".join(body.split())[:200], "body_text": body, "body_html": html,
        "blob_sha256": f"{n:064x}",
    }  # fmt: skip
    document = search_document(row, [name for name, _ in files])
    row["search_text"] = to_tsvector_text(document)  # COPY takes the tsvector text form
    return row, files


def _build(chunk: Chunk) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return chunk.rows()


def chunks(tenant: str, ids: dict[str, Any], count: int, now: datetime) -> Iterator[Chunk]:
    """The tasks that generate ``count`` messages of one tenant."""
    for start in range(0, count, CHUNK):
        yield Chunk(tenant, ids, start, min(count, start + CHUNK), count, now)


def fill(conn: psycopg.Connection[Any], tasks: list[Chunk], workers: int) -> int:
    """Generate in worker processes and COPY each chunk as it arrives; returns messages."""
    tables = [(Message.__table__, _defaults(Message.__table__)),
              (Attachment.__table__, _defaults(Attachment.__table__))]  # fmt: skip
    done = 0
    with Pool(workers) as pool:
        for messages, attachments in pool.imap(_build, tasks):
            for (table, defaults), rows in zip(tables, (messages, attachments), strict=True):
                _copy(conn, table, defaults, rows)
            conn.commit()
            done += len(messages)
            print(f"\r  {done:,} messages", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return done


def _copy(
    conn: psycopg.Connection[Any], table: Any, defaults: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    columns = list(table.columns)
    names = ", ".join(f'"{c.name}"' for c in columns)
    with conn.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            values = {**defaults, **row}
            copy.write_row([_copy_value(c, values.get(c.name)) for c in columns])
