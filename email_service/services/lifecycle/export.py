"""An account's mail as one mbox (mboxrd), streamed: a user can leave with their data.

Each stored message (one per folder it is in, folders by name, then by UID) is written as
its original bytes between a ``From `` separator line and one ``\n`` (a blank line after a
message that ends in a line break, as they all do from IMAP servers). mboxrd quoting
(a ``>`` before any line that reads ``From `` after zero or more ``>``) is the only
change, and reading the file back as mboxrd undoes it exactly: the bytes that come out
are the bytes the server sent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select, tuple_

from email_service.services import accounts
from email_service.services.runtime import Runtime
from email_service.store.models import Folder, Message
from email_service.store.scope import tenant_scope

# Rows read per query while streaming (each batch in its own short transaction).
BATCH = 200
# Lines that mboxrd quotes: "From " behind any number of ">".
FROM_LINE = re.compile(rb"^(>*From )", re.M)


@dataclass(frozen=True)
class ExportItem:
    """One message's place in the export."""

    folder: str
    uid: int
    blob_sha256: str
    sender: str | None
    received: datetime


def count(runtime: Runtime, tenant_id: str, account_id: uuid.UUID) -> int:
    """How many messages an export of the account holds (404 for another tenant's)."""
    with runtime.db.reading() as session:
        accounts.get_account(session, tenant_id, account_id)
        query = select(func.count()).select_from(Message).where(_mine(tenant_id, account_id))
        return int(session.scalar(query) or 0)


def mbox(runtime: Runtime, tenant_id: str, account_id: uuid.UUID) -> Iterator[bytes]:
    """The account's mbox, one message per chunk; check the account exists first (count)."""
    blobs = runtime.blobs.tenant(tenant_id)
    for item in _items(runtime, tenant_id, account_id):
        yield separator(item) + quote(blobs.get(item.blob_sha256)) + b"\n"  # one, always


def separator(item: ExportItem) -> bytes:
    """The ``From `` line: envelope sender (or MAILER-DAEMON) and the arrival time."""
    sender = item.sender if item.sender and " " not in item.sender else "MAILER-DAEMON"
    return f"From {sender} {item.received.strftime('%a %b %d %H:%M:%S %Y')}\n".encode(
        "ascii", "replace"
    )


def quote(raw: bytes) -> bytes:
    """mboxrd: one more ``>`` before every ``>*From `` line, nothing else changed."""
    return FROM_LINE.sub(rb">\1", raw)


def _items(runtime: Runtime, tenant_id: str, account_id: uuid.UUID) -> Iterator[ExportItem]:
    """The account's messages in export order, read in keyset batches."""
    after: tuple[str, int, uuid.UUID] | None = None
    while True:
        query = (
            select(Folder.name, Message.uid, Message.id, Message.blob_sha256)
            .add_columns(Message.from_email, Message.received_date)
            .join(Folder, Folder.id == Message.folder_id)
            .where(_mine(tenant_id, account_id))
            .order_by(Folder.name, Message.uid, Message.id)
            .limit(BATCH)
        )
        if after is not None:
            query = query.where(tuple_(Folder.name, Message.uid, Message.id) > tuple_(*after))
        # A streamed response reads on after its request has left the tenant's scope.
        with tenant_scope(tenant_id), runtime.db.reading() as session:
            rows = session.execute(query).all()
        if not rows:
            return
        for name, uid, _id, digest, sender, received in rows:
            yield ExportItem(name, uid, digest, sender, received)
        last = rows[-1]
        after = (last[0], last[1], last[2])


def _mine(tenant_id: str, account_id: uuid.UUID) -> ColumnElement[bool]:
    """The account's rows, guarded by the tenant."""
    return and_(Message.tenant_id == tenant_id, Message.account_id == account_id)
