"""Folder roles: RFC 6154 attributes first, names for servers without SPECIAL-USE."""

from __future__ import annotations

import pytest

from email_service.mail.imap.folders import ListEntry, assign_roles, build_folders, parse_list
from email_service.mail.imap.parse import ImapProtocolError, parse_segments
from email_service.mail.imap.types import FolderStatus


def entry(raw: str, *flags: str, delimiter: str | None = "/") -> ListEntry:
    return ListEntry(raw, delimiter, frozenset(flags))


def test_attributes_win_over_names() -> None:
    entries = [
        entry("INBOX"),
        entry("Sent Items"),  # a user's folder that merely looks like Sent
        entry("Outbox-copies", "\\Sent"),
        entry("Papierkorb"),
    ]
    assert assign_roles(entries) == {
        "INBOX": "inbox",
        "Outbox-copies": "sent",
        "Papierkorb": "trash",  # no folder has \Trash: the name decides
    }


@pytest.mark.parametrize(
    ("raw", "delimiter", "role"),
    [
        ("Sent Messages", "/", "sent"),
        ("Gesendete Objekte", "/", "sent"),
        ("[Gmail]/Sent Mail", "/", "sent"),
        ("INBOX.Sent", ".", "sent"),
        ("Deleted Items", "/", "trash"),
        ("Spam", "/", "junk"),
        ("Junk E-mail", "/", "junk"),
        ("Entw&APw-rfe", "/", "drafts"),  # Entwürfe, modified UTF-7
        ("&j,dg0TDhMPww6w-", "/", "junk"),  # 迷惑メール
        ("[Gmail]/All Mail", "/", "all"),
        ("[Gmail]/Starred", "/", "flagged"),
        ("Archiv", "/", "archive"),
        ("inbox", "/", "inbox"),
        ("Projects", "/", None),
        ("Sent/2019", "/", None),
    ],
)
def test_roles_by_name(raw: str, delimiter: str, role: str | None) -> None:
    assert assign_roles([entry(raw, delimiter=delimiter)]).get(raw) == role


def test_one_folder_per_role_by_name_the_shallowest() -> None:
    entries = [entry("Archive/Sent"), entry("Sent"), entry("Sent Items")]
    assert assign_roles(entries) == {"Sent": "sent"}


def test_gmail_xlist_attributes_and_unselectable_entries() -> None:
    entries = [
        entry("[Gmail]", "\\Noselect", "\\HasChildren"),
        entry("[Gmail]/Alle Nachrichten", "\\AllMail"),
        entry("[Gmail]/Spam", "\\Spam"),
        entry("Trash", "\\NonExistent"),
    ]
    folders = build_folders(entries, {})
    assert [(f.raw_name, f.role, f.selectable) for f in folders] == [
        ("[Gmail]", None, False),
        ("[Gmail]/Alle Nachrichten", "all", True),
        ("[Gmail]/Spam", "junk", True),
        ("Trash", None, False),
    ]


def test_parse_list_and_status_keys() -> None:
    response = parse_segments([b'* LIST (\\HasNoChildren \\Drafts) "/" ', b""], [b"Entw&APw-rfe"])
    listed = parse_list(response)
    assert (listed.raw_name, listed.delimiter, listed.flags) == (
        "Entw&APw-rfe",
        "/",
        frozenset({"\\HasNoChildren", "\\Drafts"}),
    )
    flat = parse_list(parse_segments([b"* LIST (\\Noselect) NIL Shared"], []))
    assert (flat.raw_name, flat.delimiter, flat.selectable) == ("Shared", None, False)
    status = FolderStatus(messages=1, uidnext=2, uidvalidity=3)
    [inbox] = build_folders([entry("Inbox")], {"INBOX": status})  # INBOX is case-insensitive
    assert (inbox.role, inbox.status, inbox.name) == ("inbox", status, "Inbox")
    with pytest.raises(ImapProtocolError):
        parse_list(parse_segments([b"* LIST \\Noselect"], []))
