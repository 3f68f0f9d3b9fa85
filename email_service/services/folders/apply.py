"""The folder job: run a client's folder change on the IMAP server, then reconcile.

The store already shows the change (``manage.py``). Here the server follows: CREATE (with
its special use where the server has CREATE-SPECIAL-USE, RFC 6154 §3), RENAME, SUBSCRIBE
or UNSUBSCRIBE, or emptying and DELETE of the folder and its children, deepest first.
A command the server refuses is not retried; the state it left is checked in LIST, so a
repeated job (acks_late) whose change is already there succeeds. Then the account's folder
rows are reconciled with LIST as a sync does: a refused change disappears from the store,
and roles and attributes become what the server says.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.errors import RemotePermanentError
from email_service.mail.imap.session import Folder as ServerFolder
from email_service.mail.imap.session import ImapSession
from email_service.services.events import record as announce
from email_service.services.folders.manage import FolderChange, FolderOp
from email_service.services.gateways import account_login, open_imap
from email_service.services.runtime import Runtime
from email_service.services.sync.folders import reconcile
from email_service.store.change_log import Op
from email_service.store.models import Folder

log = logging.getLogger(__name__)


def _empty(imap: ImapSession, raw_name: str) -> int:
    """Expunge every message of a folder (before DELETE, for servers that want it empty)."""
    try:
        imap.select_folder(raw_name, readonly=False)
    except RemotePermanentError:  # \Noselect: a name in the hierarchy, no messages
        return 0
    uids = imap.search_uids("ALL")
    if uids:
        imap.store_flags(uids, add=["\\Deleted"])
    imap.close_folder()  # expunges them; Dovecot drops a client whose folder is deleted
    return len(uids)


def _delete(imap: ImapSession, raw_names: list[str]) -> int:
    """Empty and delete each folder; one already gone (a repeated job) is skipped."""
    emptied = 0
    for raw_name in raw_names:
        try:
            emptied += _empty(imap, raw_name)
            imap.delete_folder(raw_name)
        except RemotePermanentError as exc:
            if exc.details.get("response_code") != "NONEXISTENT":
                raise
    return emptied


def _run(imap: ImapSession, change: FolderChange) -> dict[str, Any]:
    """The change's IMAP commands; what they did."""
    if change.op == FolderOp.CREATE:
        role_applied = imap.create_folder(change.raw_name, change.role)
        imap.subscribe(change.raw_name)  # as clients do: a new folder is shown
        return {"role_applied": role_applied}
    if change.op == FolderOp.DELETE:
        return {"expunged": _delete(imap, change.doomed)}
    name = change.raw_name
    if change.new_raw_name is not None:
        imap.rename_folder(name, change.new_raw_name)
        name = change.new_raw_name
    if change.subscribed is not None:
        imap.subscribe(name, change.subscribed)
    return {}


def _holds(change: FolderChange, listed: list[ServerFolder]) -> bool:
    """True if LIST shows the change done (a repeated job after a lost answer)."""
    names = {f.raw_name for f in listed}
    if change.op == FolderOp.CREATE:
        return change.raw_name in names
    if change.op == FolderOp.DELETE:
        return not names & set(change.doomed)
    if change.new_raw_name is not None:
        return change.new_raw_name in names and change.raw_name not in names
    return False


def apply_folder_change(
    runtime: Runtime, tenant_id: str, account_id: uuid.UUID, change_json: str
) -> dict[str, Any]:
    """The folder job: the change on the server, then the store reconciled with LIST."""
    change = FolderChange.from_json(change_json)
    with runtime.db.session() as session:
        login = account_login(session, runtime, tenant_id, account_id)
    with open_imap(runtime, login) as imap:
        try:
            outcome = {"op": change.op, "done": True, **_run(imap, change)}
        except RemotePermanentError as exc:
            outcome = {"op": change.op, "done": False, "error": exc.message}
        listed = imap.list_folders(with_status=False)
    if not outcome["done"] and _holds(change, listed):
        outcome = {"op": change.op, "done": True}
    if not outcome["done"]:
        log.warning(
            "folder change refused: %s",
            outcome.get("error"),
            extra={"account_id": str(account_id), **outcome},
        )
    with runtime.db.session() as session:
        _keep_created_id(session, tenant_id, account_id, change, listed)
        reconcile(session, tenant_id, account_id, listed)
    return outcome


def _keep_created_id(
    session: Session,
    tenant_id: str,
    account_id: uuid.UUID,
    change: FolderChange,
    listed: list[ServerFolder],
) -> None:
    """A created folder keeps the id the client got, even if a sync dropped its row meanwhile."""
    remote = next((f for f in listed if f.raw_name == change.raw_name), None)
    if change.op != FolderOp.CREATE or remote is None:
        return
    same_name = select(Folder.id).where(
        Folder.account_id == account_id, Folder.raw_name == change.raw_name
    )
    if session.scalar(same_name) is not None:
        return  # still there (the usual case), or a sync stored it under its own id
    row = Folder(
        id=uuid.UUID(change.folder_id),
        tenant_id=tenant_id,
        account_id=account_id,
        raw_name=remote.raw_name,
        name=remote.name,
        message_count=0,
        unread_count=0,
    )
    session.add(row)
    session.flush()
    announce.folder(session, row, Op.CREATED)
