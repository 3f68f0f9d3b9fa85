"""After SMTP: the copy in the Sent folder, the flag on the original, and looking for a
message whose fate is unknown (by its Message-ID, RFC 5322 §3.6.4).

Every step searches before it writes, so running it twice (a worker died in between)
leaves one copy: ``UID SEARCH HEADER Message-ID`` (RFC 9051 §6.4.4) finds the first one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from email_service.config import Security
from email_service.errors import EmailServiceError, RemoteTemporaryError
from email_service.mail.imap.session import ImapSession, search_string
from email_service.services import gateways
from email_service.services.events import record as announce
from email_service.services.hosts import Endpoint
from email_service.services.imap_pool import Pooled, imap_pool
from email_service.services.oauth import tokens as oauth_tokens
from email_service.services.runtime import Runtime
from email_service.store.change_log import Op
from email_service.store.models import Account, Folder, Message, Outbox
from email_service.store.states import SentCopyState
from email_service.store.tenancy import tenant_row

log = logging.getLogger(__name__)
# The folder a server delivers to; recipients' copies are looked for there (RFC 9051 §5.1).
INBOX = "INBOX"


@dataclass(frozen=True)
class SentCopy:
    """What became of the Sent copy and of the flag on the original."""

    state: SentCopyState  # APPENDED, SERVER_COPY or NO_FOLDER
    uid: int | None
    flagged: bool


def imap_login(session: Session, runtime: Runtime, account: Account) -> gateways.Login:
    """The account's IMAP login (password decrypted only for this connection)."""
    endpoint = Endpoint(account.imap_host, account.imap_port, Security(account.imap_security))
    return gateways.Login(endpoint, account.username, oauth_tokens.login_secret(runtime, account))


def _account(session: Session, row: Outbox) -> Account:
    return tenant_row(session, Account, row.tenant_id, row.account_id)


def search_message_id(imap: ImapSession, raw_name: str, message_id: str) -> list[int]:
    """UIDs in a folder whose Message-ID header is ``message_id``."""
    imap.select_folder(raw_name, readonly=True)
    return imap.search_uids(f"HEADER Message-ID {search_string(message_id)}")


@dataclass(frozen=True)
class Origin:
    """Where the replied-to or forwarded message is on the server."""

    raw_name: str
    uidvalidity: int
    uid: int


def context(
    session: Session, runtime: Runtime, row: Outbox, account: Account | None = None
) -> tuple[Account, gateways.Login, Origin | None]:
    """The sender's account (read unless given), its IMAP login and the original to flag,
    read in the caller's transaction."""
    account = account or _account(session, row)
    return account, imap_login(session, runtime, account), _origin(session, row)


T = TypeVar("T")


def with_session(runtime: Runtime, login: gateways.Login, step: Callable[[Pooled], T]) -> T:
    """Run ``step`` on a pooled session; once more on a fresh one if a reused one was dead."""
    pool = imap_pool(runtime)
    used: list[Pooled] = []
    try:
        with pool.session(runtime, login) as pooled:
            used.append(pooled)
            return step(pooled)
    except RemoteTemporaryError:
        if not (used and used[0].reused):
            raise
    with pool.session(runtime, login) as pooled:
        return step(pooled)


def store_sent_copy(
    runtime: Runtime,
    row: Outbox,
    data: bytes,
    login: gateways.Login,
    origin: Origin | None,
    just_sent: bool = False,
) -> SentCopy:
    """Append the sent message to Sent unless it is there already; flag the original.

    ``just_sent``: the first copy of a message whose 250 this run received, so no earlier
    run can have copied it; a copy the server filed itself is then newer than anything a
    reused session saw in Sent before, and only those messages are searched.
    """

    def step(pooled: Pooled) -> SentCopy:
        state, uid = _append_once(pooled, row, data, just_sent)
        flagged = origin is not None and _flag(pooled.imap, origin, row.origin_flag or "")
        return SentCopy(state, uid, flagged)

    return with_session(runtime, login, step)


def _append_once(
    pooled: Pooled, row: Outbox, data: bytes, just_sent: bool = False
) -> tuple[SentCopyState, int | None]:
    sent = pooled.folder("sent")
    if sent is None:
        return SentCopyState.NO_FOLDER, None
    found = _in_sent(pooled, sent, row.message_id, just_sent)
    if found:
        return SentCopyState.SERVER_COPY, found[-1]
    result = pooled.imap.append(sent, data, ["\\Seen"], row.sent_at)
    if result is None:  # no APPENDUID: nothing learnt about the UIDs to come
        pooled.sent_next = None
        return SentCopyState.APPENDED, None
    uidvalidity, uid = result
    # Messages added to Sent from now on get a greater UID (RFC 9051 §2.3.1.1).
    pooled.sent_next = (uidvalidity, uid + 1)
    return SentCopyState.APPENDED, uid


def _in_sent(pooled: Pooled, sent: str, message_id: str, just_sent: bool) -> list[int]:
    """UIDs in Sent with this Message-ID. For a message ``just_sent`` on a session that has
    seen Sent before (``Pooled.sent_next``), only the messages added since are searched:
    the server had no copy of it then. The folder stays selected between sends: a NOOP
    brings in what was added meanwhile (RFC 9051 §6.1.2) instead of EXAMINE again."""
    known = pooled.sent_next
    if pooled.imap.selected == sent and known is not None:
        pooled.imap.noop()
    else:
        selected = pooled.imap.select_folder(sent, readonly=True)
        if known is not None and known[0] != selected.uidvalidity:
            known = None
        pooled.sent_next = (selected.uidvalidity, selected.uidnext)
    criteria = f"HEADER Message-ID {search_string(message_id)}"
    if not (just_sent and known is not None):
        return pooled.imap.search_uids(criteria)
    first = known[1]
    # "first:*" also names the last message when it is older than first (RFC 9051 §9)
    return [uid for uid in pooled.imap.search_uids(f"UID {first}:* {criteria}") if uid >= first]


def _origin(session: Session, row: Outbox) -> Origin | None:
    if row.origin_message_id is None or not row.origin_flag:
        return None
    found = session.execute(
        select(Folder.raw_name, Message.uidvalidity, Message.uid)
        .join(Folder, Folder.id == Message.folder_id)
        .where(Message.tenant_id == row.tenant_id, Message.id == row.origin_message_id)
    ).first()
    return Origin(*found) if found else None


def _flag(imap: ImapSession, origin: Origin, flag: str) -> bool:
    """Set the flag on the original; a renumbered folder (UIDVALIDITY) is left alone."""
    try:
        selected = imap.select_folder(origin.raw_name, readonly=False)
        if selected.uidvalidity != origin.uidvalidity:
            return False
        imap.store_flags([origin.uid], add=[flag])
    except EmailServiceError as exc:  # the copy matters more than the flag
        log.warning("could not flag the original: %s", exc.message)
        return False
    return True


def flag_locally(session: Session, row: Outbox) -> None:
    """Mirror the flag on the stored original, as the next sync would."""
    if row.origin_message_id is None or not row.origin_flag:
        return
    original = session.scalar(
        select(Message).where(
            Message.tenant_id == row.tenant_id, Message.id == row.origin_message_id
        )
    )
    if original is None:
        return
    if row.origin_flag not in original.flags:
        original.flags = [*original.flags, row.origin_flag]
    if row.origin_flag == "\\Answered":
        original.answered = True
    if session.is_modified(original):
        announce.message_rows(session, [original], Op.UPDATED)


def find_delivered(runtime: Runtime, row: Outbox) -> str | None:
    """Where the message turned up, if anywhere: ``store``, ``sent_folder`` or ``recipient``.

    Looks in the synced store of this tenant, the sender's Sent folder (servers that file
    submitted mail themselves) and the INBOX of recipients that are accounts of the same
    tenant. Never another tenant's mailboxes.
    """
    with runtime.db.session() as session:
        if _in_store(session, row):
            return "store"
        sender = _account(session, row)
        logins: list[tuple[str, gateways.Login, str | None]] = [
            ("sent_folder", imap_login(session, runtime, sender), None)
        ]
        for account in _recipient_accounts(session, row):
            logins.append(("recipient", imap_login(session, runtime, account), INBOX))
    for where, login, folder in logins:
        if _found_over_imap(runtime, login, folder, row.message_id):
            return where
    return None


def _in_store(session: Session, row: Outbox) -> bool:
    found = session.scalar(
        select(Message.id)
        .join(Folder, Folder.id == Message.folder_id)
        .where(
            Message.tenant_id == row.tenant_id,
            Message.message_id == row.message_id,
            func.coalesce(Folder.role, "") != "drafts",
        )
        .limit(1)
    )
    return found is not None


def _recipient_accounts(session: Session, row: Outbox) -> list[Account]:
    wanted = [r.lower() for r in row.recipients]
    return list(
        session.scalars(
            select(Account).where(
                Account.tenant_id == row.tenant_id,
                func.lower(Account.email).in_(wanted),
                Account.id != row.account_id,
            )
        )
    )


def _found_over_imap(
    runtime: Runtime, login: gateways.Login, folder: str | None, message_id: str
) -> bool:
    def step(pooled: Pooled) -> bool:
        raw_name = folder or pooled.folder("sent")
        return raw_name is not None and bool(search_message_id(pooled.imap, raw_name, message_id))

    try:
        return with_session(runtime, login, step)
    except (EmailServiceError, OSError) as exc:
        log.info("reconciliation could not search %s: %s", login.endpoint.host, exc)
        return False
