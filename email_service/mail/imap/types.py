"""Plain values the IMAP layer hands to the sync engine (no behaviour, no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# Roles a folder can have: RFC 6154 special uses, plus "inbox".
ROLES = ("inbox", "sent", "drafts", "trash", "junk", "archive", "all", "flagged")


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """STATUS of one mailbox (RFC 9051 §6.3.11; HIGHESTMODSEQ from RFC 7162 §3.1.2)."""

    messages: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int | None = None  # None: no CONDSTORE, or the mailbox has NOMODSEQ
    unseen: int | None = None


@dataclass(frozen=True, slots=True)
class Folder:
    """One LIST entry with its role and, when asked for, its status."""

    raw_name: str  # exactly as the server sent it (modified UTF-7): use it in commands
    name: str  # decoded for people; the raw name if it was not valid modified UTF-7
    delimiter: str | None
    flags: frozenset[str]  # name attributes as sent: \HasNoChildren, \Sent, \Noselect ...
    role: str | None  # one of ROLES, or None
    status: FolderStatus | None
    selectable: bool


@dataclass(frozen=True, slots=True)
class FlagsUpdate:
    """Flags of one message and the mod-sequence of their last change (RFC 7162 §3.1.4)."""

    flags: frozenset[str]
    modseq: int | None = None


@dataclass(frozen=True, slots=True)
class SelectResult:
    """What SELECT/EXAMINE reported (RFC 9051 §6.3.2), incl. QRESYNC data (RFC 7162 §3.2.5)."""

    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None
    vanished: list[int] = field(default_factory=list)  # from VANISHED (EARLIER)
    changed: dict[int, FlagsUpdate] = field(default_factory=dict)  # uid -> new flags
    readonly: bool = True


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """One message from a streamed FETCH; ``body`` is the exact bytes of BODY[]."""

    uid: int
    flags: frozenset[str]
    internaldate: dt.datetime  # timezone-aware, in the server's offset
    size: int  # RFC822.SIZE
    modseq: int | None
    body: bytes
