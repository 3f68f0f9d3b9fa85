"""Folder changes a client asks for: applied to the store at once, then on IMAP by a job.

The row changes in the request's transaction, with its change-log row (``folder.*``); the
job (``apply_folder_change``, ``services/folders/apply.py``) runs the IMAP command and then
reconciles the account's folders with LIST, as the next sync would. INBOX is never renamed
or deleted (RFC 9051 §6.3.5, §6.3.6 give it special meanings); a folder with a role
(Sent, Trash ...) only with ``force``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from email_service.errors import ValidationError
from email_service.mail.imap.folders import ROLE_ATTRIBUTES
from email_service.services.events import record as announce
from email_service.services.folders.names import (
    account_delimiter,
    check_free,
    descendants,
    folder_name,
)
from email_service.services.messages import SUBSCRIBED, folder_view
from email_service.services.runtime import Runtime
from email_service.store.change_log import Op
from email_service.store.models import Account, Folder
from email_service.store.tenancy import check_tenant_row, tenant_row

FOLDER_TASK = "apply_folder_change"


class FolderOp(StrEnum):
    """What a folder job does on the server."""

    CREATE = "create"
    UPDATE = "update"  # rename and/or (un)subscribe
    DELETE = "delete"


@dataclass
class FolderChange:
    """One folder change for the job queue (JSON only crosses the broker)."""

    op: str
    folder_id: str
    raw_name: str  # the server's name before the change
    new_raw_name: str | None = None
    role: str | None = None
    subscribed: bool | None = None
    doomed: list[str] = field(default_factory=list)  # DELETE: raw names, deepest first

    def to_json(self) -> str:
        """For the job queue."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FolderChange:
        """Back from the job queue."""
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Requested:
    """The folder as it is now stored, and the job applying the change on the server."""

    folder: dict[str, Any] | None
    job_id: str


def _folder(
    session: Session, tenant_id: str, account_id: uuid.UUID, folder_id: uuid.UUID
) -> Folder:
    check_tenant_row(session, Account, tenant_id, account_id)
    return tenant_row(session, Folder, tenant_id, folder_id, Folder.account_id == account_id)


def _guard(row: Folder, force: bool, what: str) -> None:
    """INBOX never; a folder with a role only when forced (422)."""
    if row.raw_name.upper() == "INBOX" or row.role == "inbox":
        raise ValidationError(f"INBOX cannot be {what}", field="folder_id")
    if row.role is not None and not force:
        raise ValidationError(
            f"the {row.role} folder is {what} only with force=true", field="force", role=row.role
        )


def _queue(runtime: Runtime, tenant_id: str, account_id: uuid.UUID, change: FolderChange) -> str:
    """Hand the change to the job queue (after its transaction committed)."""
    job_id = uuid.uuid4().hex
    assert runtime.queue is not None, "no job queue wired"
    runtime.queue.enqueue(
        FOLDER_TASK,
        job_id,
        tenant_id=tenant_id,
        account_id=str(account_id),
        change=change.to_json(),
    )
    return job_id


def create_folder(
    runtime: Runtime,
    tenant_id: str,
    account_id: uuid.UUID,
    name: str,
    parent_id: uuid.UUID | None = None,
    role: str | None = None,
) -> Requested:
    """A new folder (nested by its path, or inside ``parent_id``), with a special use."""
    if role is not None and role not in ROLE_ATTRIBUTES:
        raise ValidationError(f"role must be one of {sorted(ROLE_ATTRIBUTES)}", field="role")
    with runtime.db.session() as session:
        check_tenant_row(session, Account, tenant_id, account_id)
        parent = None if parent_id is None else _folder(session, tenant_id, account_id, parent_id)
        delimiter = account_delimiter(session, account_id)
        names = folder_name(name, delimiter, parent)
        check_free(session, account_id, names.raw_name)
        row = Folder(
            tenant_id=tenant_id,
            account_id=account_id,
            raw_name=names.raw_name,
            name=names.name,
            delimiter=delimiter,
            role=role,
            attributes=[SUBSCRIBED],  # RFC 9051 §6.3.4 leaves it open; we subscribe it
            selectable=True,
            message_count=0,
            unread_count=0,
        )
        session.add(row)
        session.flush()
        announce.folder(session, row, Op.CREATED)
        view = folder_view(row)
        change = FolderChange(FolderOp.CREATE, str(row.id), row.raw_name, role=role)
    return Requested(view, _queue(runtime, tenant_id, account_id, change))


def _rename(session: Session, row: Folder, names_raw: str, names_name: str) -> None:
    """The folder and its children under the new name, in the store."""
    old_raw, old_name = row.raw_name, row.name
    for child in descendants(session, row):
        child.raw_name = names_raw + child.raw_name[len(old_raw) :]
        child.name = names_name + child.name[len(old_name) :]
        announce.folder(session, child, Op.UPDATED)
    row.raw_name, row.name = names_raw, names_name


def _subscribe(row: Folder, subscribed: bool) -> None:
    others = [a for a in row.attributes if a.lower() != SUBSCRIBED.lower()]
    row.attributes = [*others, SUBSCRIBED] if subscribed else others


def update_folder(
    runtime: Runtime,
    tenant_id: str,
    account_id: uuid.UUID,
    folder_id: uuid.UUID,
    *,
    name: str | None = None,
    subscribed: bool | None = None,
    force: bool = False,
) -> Requested:
    """Rename (``name`` is the new path) and/or (un)subscribe a folder."""
    if name is None and subscribed is None:
        raise ValidationError("give name and/or subscribed", field="name")
    with runtime.db.session() as session:
        row = _folder(session, tenant_id, account_id, folder_id)
        change = FolderChange(FolderOp.UPDATE, str(row.id), row.raw_name, subscribed=subscribed)
        if name is not None:
            _guard(row, force, "renamed")
            names = folder_name(name, account_delimiter(session, account_id))
            if names.raw_name.startswith(row.raw_name + (row.delimiter or "\0")):
                raise ValidationError("a folder cannot move into itself", field="name")
            if names.raw_name != row.raw_name:
                check_free(session, account_id, names.raw_name)
                _rename(session, row, names.raw_name, names.name)
                change.new_raw_name = names.raw_name
        if subscribed is not None:
            _subscribe(row, subscribed)
        announce.folder(session, row, Op.UPDATED)
        view = folder_view(row)
    return Requested(view, _queue(runtime, tenant_id, account_id, change))


def delete_folder(
    runtime: Runtime, tenant_id: str, account_id: uuid.UUID, folder_id: uuid.UUID, force: bool
) -> Requested:
    """Remove a folder, its children and their messages; the server empties and deletes."""
    with runtime.db.session() as session:
        row = _folder(session, tenant_id, account_id, folder_id)
        doomed = [*descendants(session, row), row]
        for folder in doomed:
            _guard(folder, force, "deleted")
        change = FolderChange(
            FolderOp.DELETE, str(row.id), row.raw_name, doomed=[f.raw_name for f in doomed]
        )
        for folder in doomed:
            announce.folder_removed(session, folder)
            session.delete(folder)
    return Requested(None, _queue(runtime, tenant_id, account_id, change))
