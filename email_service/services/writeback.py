"""Changes a client makes to messages: applied locally, then on the IMAP server by a job.

Flags and keywords change in the store at once; the job sets them on the server. Moves
and deletions happen on the server first (the job), and the job then re-keys the local
rows from the server's COPYUID answer (RFC 4315 §3), so a moved message keeps its id and
thread; where the server gives no mapping the row is dropped and the next sync fetches the
message in its new folder. A sync running meanwhile is harmless: whichever stores the
moved message first wins, the other notices the duplicate key and drops its copy.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from email_service.errors import ValidationError
from email_service.mail.imap.session import ImapSession
from email_service.services.events import record as announce
from email_service.services.gateways import account_login, open_imap
from email_service.services.runtime import Runtime
from email_service.services.sync.folders import recount
from email_service.services.sync.ingest import flag_values
from email_service.store.change_log import Op
from email_service.store.models import Folder, Message
from email_service.store.tenancy import tenant_row, tenant_rows

WRITEBACK_TASK = "apply_message_changes"
# IMAP keywords are atoms (RFC 9051 §4.1); a safe subset, no backslash (system flags).
KEYWORD = re.compile(r"^[A-Za-z0-9$_.\-]{1,64}$")
SYSTEM_FLAGS = {"seen": "\\Seen", "flagged": "\\Flagged", "answered": "\\Answered"}
# Ids per request of the bulk form; more is a job for a search-and-act feature.
MAX_BULK_IDS = 500


@dataclass
class Change:
    """What to do to a set of messages of one account."""

    ids: list[str]
    add_flags: list[str] = field(default_factory=list)
    remove_flags: list[str] = field(default_factory=list)
    move_to: str | None = None  # folder id
    delete: bool = False  # to Trash; expunge when already in Trash or ``expunge``
    expunge: bool = False

    def to_json(self) -> str:
        """For the job queue (JSON only crosses the broker)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Change:
        """Back from the job queue."""
        return cls(**json.loads(text))


def flag_changes(
    values: dict[str, bool | None], add_keywords: list[str], remove_keywords: list[str]
) -> tuple[list[str], list[str]]:
    """Flags to add and remove from booleans (seen/flagged/answered) and keywords."""
    for keyword in [*add_keywords, *remove_keywords]:
        if not KEYWORD.match(keyword):
            raise ValidationError(f"invalid keyword {keyword!r}", field="keywords")
    add = [SYSTEM_FLAGS[k] for k, v in values.items() if v is True] + add_keywords
    remove = [SYSTEM_FLAGS[k] for k, v in values.items() if v is False] + remove_keywords
    return add, remove


def load_messages(session: Session, tenant_id: str, ids: list[uuid.UUID]) -> list[Message]:
    """The tenant's messages with these ids; NotFoundError if any is missing."""
    if len(ids) > MAX_BULK_IDS:
        raise ValidationError(f"at most {MAX_BULK_IDS} ids per request", field="ids")
    return tenant_rows(session, Message, tenant_id, ids)


def destination(
    session: Session, tenant_id: str, account_id: uuid.UUID, folder_id: uuid.UUID
) -> Folder:
    """A folder of the same account to move into."""
    same_account = Folder.account_id == account_id
    return tenant_row(session, Folder, tenant_id, folder_id, same_account, field="folder_id")


def apply_locally(rows: list[Message], add: list[str], remove: list[str]) -> None:
    """Reflect flag changes in the store at once."""
    for row in rows:
        flags = (set(row.flags) | set(add)) - set(remove)
        for column, value in flag_values(flags).items():
            setattr(row, column, value)
    announce.messages_changed(rows)


def group_by_account(rows: list[Message]) -> dict[uuid.UUID, list[Message]]:
    """Messages per account: one job each."""
    grouped: dict[uuid.UUID, list[Message]] = defaultdict(list)
    for row in rows:
        grouped[row.account_id].append(row)
    return grouped


@dataclass(frozen=True)
class Requested:
    """Jobs queued for a change request."""

    job_ids: list[str]
    messages: list[Message]


def request_change(
    runtime: Runtime,
    tenant_id: str,
    ids: list[uuid.UUID],
    *,
    flags: dict[str, bool | None],
    add_keywords: list[str],
    remove_keywords: list[str],
    move_to: uuid.UUID | None = None,
    delete: bool = False,
    expunge: bool = False,
) -> Requested:
    """Validate, reflect flags locally, commit, then queue one job per account."""
    add, remove = flag_changes(flags, add_keywords, remove_keywords)
    with runtime.db.session() as session:
        rows = load_messages(session, tenant_id, ids)
        groups = group_by_account(rows)
        if move_to is not None:
            for account_id in groups:
                destination(session, tenant_id, account_id, move_to)
        apply_locally(rows, add, remove)
        recount(session, {row.folder_id for row in rows})
    jobs = []
    for account_id, members in groups.items():
        change = Change(
            [str(m.id) for m in members],
            add,
            remove,
            str(move_to) if move_to else None,
            delete,
            expunge,
        )
        job_id = uuid.uuid4().hex
        assert runtime.queue is not None, "no job queue wired"
        runtime.queue.enqueue(
            WRITEBACK_TASK,
            job_id,
            tenant_id=tenant_id,
            account_id=str(account_id),
            change=change.to_json(),
        )
        jobs.append(job_id)
    return Requested(jobs, rows)


def apply_on_server(session: Session, imap: ImapSession, change: Change) -> dict[str, int]:
    """Run a change against the server and re-key/drop the local rows; returns counts."""
    rows = list(
        session.scalars(select(Message).where(Message.id.in_([uuid.UUID(i) for i in change.ids])))
    )
    counts = {"flagged": 0, "moved": 0, "deleted": 0}
    by_folder: dict[uuid.UUID, list[Message]] = defaultdict(list)
    for row in rows:
        by_folder[row.folder_id].append(row)
    touched = set(by_folder)
    for folder_id, members in by_folder.items():
        folder = session.get_one(Folder, folder_id)
        imap.select_folder(folder.raw_name, readonly=False)
        uids = [m.uid for m in members if m.uidvalidity == folder.uidvalidity]
        if change.add_flags or change.remove_flags:
            imap.store_flags(uids, change.add_flags, change.remove_flags)
            counts["flagged"] += len(uids)
        target = _target(session, folder, change)
        if target == "expunge":
            imap.expunge(uids)
            counts["deleted"] += _drop(session, members)
        elif isinstance(target, Folder):
            mapping = imap.move(uids, target.raw_name)
            counts["moved"] += _rekey(session, members, target, mapping)
            touched.add(target.id)
    recount(session, touched)
    return counts


def _target(session: Session, folder: Folder, change: Change) -> Folder | str | None:
    if change.move_to:
        return session.get_one(Folder, uuid.UUID(change.move_to))
    if not change.delete:
        return None
    trash = session.scalar(
        select(Folder).where(Folder.account_id == folder.account_id, Folder.role == "trash")
    )
    if change.expunge or trash is None or trash.id == folder.id:
        return "expunge"
    return trash


def _rekey(session: Session, rows: list[Message], target: Folder, mapping: dict[int, int]) -> int:
    moved = 0
    for row in rows:
        new_uid = mapping.get(row.uid)
        if new_uid is None or target.uidvalidity is None:
            announce.message_rows(session, [row], Op.DESTROYED)
            session.delete(row)  # the next sync fetches it in its new folder
            continue
        try:
            with session.begin_nested():
                row.folder_id, row.uid, row.uidvalidity = target.id, new_uid, target.uidvalidity
            announce.message_rows(session, [row], Op.UPDATED)
        except IntegrityError:  # a sync stored it in the target already: keep that copy
            announce.message_rows(session, [row], Op.DESTROYED)
            session.delete(row)
        moved += 1
    session.flush()
    return moved


def _drop(session: Session, rows: list[Message]) -> int:
    announce.message_rows(session, rows, Op.DESTROYED)
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)


def apply_changes(
    runtime: Runtime, tenant_id: str, account_id: uuid.UUID, change_json: str
) -> dict[str, int]:
    """The write-back job: apply a client's change on the server, then to the store."""
    change = Change.from_json(change_json)
    with runtime.db.session() as session:
        login = account_login(session, runtime, tenant_id, account_id)
    with open_imap(runtime, login) as imap, runtime.db.session() as session:
        return apply_on_server(session, imap, change)
