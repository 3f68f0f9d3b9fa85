"""Folder names as people write them, into the server's spelling.

A name is a path in the account's hierarchy: its levels are separated by the delimiter the
server gave in LIST (RFC 9051 §7.3.1), so ``Projects/2026`` on a ``/`` server is a folder
``2026`` inside ``Projects`` (created with its parent, RFC 9051 §6.3.4). Beside a parent
folder a name is one level, and the delimiter in it is refused. The server's spelling is
modified UTF-7 (RFC 3501 §5.1.3), kept in ``raw_name``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from email_service.errors import ConflictError, ValidationError
from email_service.mail.imap.codec import encode_folder_name
from email_service.store.models import Folder

# Characters no level may hold: LIST wildcards (RFC 9051 §6.3.9) and line breaks.
FORBIDDEN = frozenset("*%\r\n\x00")
# Characters per level: far above what clients show, far below command-line limits.
MAX_LEVEL_CHARS = 200
# Levels of nesting: deeper trees are a mistake, and servers cap them too.
MAX_LEVELS = 16


@dataclass(frozen=True)
class FolderName:
    """A folder's name for people and for the server."""

    name: str  # decoded, levels joined by the delimiter
    raw_name: str  # modified UTF-7, as commands send it


def account_delimiter(session: Session, account_id: uuid.UUID) -> str | None:
    """The hierarchy delimiter LIST gave for the account's folders (None: a flat server)."""
    names = select(Folder.delimiter).where(Folder.account_id == account_id)
    found = list(session.scalars(names.limit(50)))
    if not found:
        raise ConflictError("the account's folders are not synced yet", field="name")
    return next((d for d in found if d), None)


def _levels(name: str, delimiter: str | None, nested: bool) -> list[str]:
    if not nested and delimiter and delimiter in name:
        raise ValidationError(
            f"the name holds the hierarchy delimiter {delimiter!r}; "
            "give the whole path without parent_id to nest",
            field="name",
        )
    levels = name.split(delimiter) if (nested and delimiter) else [name]
    if len(levels) > MAX_LEVELS:
        raise ValidationError(f"at most {MAX_LEVELS} levels", field="name")
    for level in levels:
        if not level.strip() or len(level) > MAX_LEVEL_CHARS:
            raise ValidationError(f"each level is 1-{MAX_LEVEL_CHARS} characters", field="name")
        if FORBIDDEN & set(level):
            raise ValidationError("a folder name cannot hold *, % or line breaks", field="name")
    return levels


def folder_name(name: str, delimiter: str | None, parent: Folder | None = None) -> FolderName:
    """The decoded and raw names of ``name`` (a path, or one level inside ``parent``)."""
    if parent is not None and delimiter is None:
        raise ValidationError("the server has no folder hierarchy", field="parent_id")
    levels = _levels(name, delimiter, nested=parent is None)
    path = (delimiter or "").join(levels)
    raw = encode_folder_name(path)
    if parent is not None:
        assert delimiter is not None
        return FolderName(parent.name + delimiter + path, parent.raw_name + delimiter + raw)
    return FolderName(path, raw)


def check_free(session: Session, account_id: uuid.UUID, raw_name: str) -> None:
    """ConflictError if the account has a folder of that name (INBOX in any case)."""
    query = select(Folder.id).where(Folder.account_id == account_id, Folder.raw_name == raw_name)
    if raw_name.upper() == "INBOX" or session.scalar(query) is not None:
        raise ConflictError(f"a folder {raw_name!r} exists", field="name")


def descendants(session: Session, row: Folder) -> list[Folder]:
    """The folder's children, grandchildren ... deepest first."""
    if not row.delimiter:
        return []
    prefix = row.raw_name + row.delimiter
    rows = session.scalars(select(Folder).where(Folder.account_id == row.account_id))
    found = [f for f in rows if f.raw_name.startswith(prefix)]
    return sorted(found, key=lambda f: -f.raw_name.count(row.delimiter or ""))
