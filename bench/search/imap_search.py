"""The benchmark's 20 queries as IMAP SEARCH criteria, and a client that times them.

This is what an email API without its own index does: translate the query into SEARCH
keys and run it on every folder it covers (EXAMINE, then UID SEARCH), one folder after the
other on one connection. Where IMAP has no key for a term, the closest one is used and
named in the table: ``has:attachment`` becomes a multipart/mixed Content-Type header,
``filename:pdf`` a TEXT search for ".pdf" in those; free words become TEXT (headers and body).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient

ALL = "*"  # every selectable folder
HAS_ATTACHMENT = ["HEADER", "Content-Type", "multipart/mixed"]


def _since(days: int) -> Callable[[datetime], list[Any]]:
    return lambda now: ["SINCE", (now - timedelta(days=days)).date()]


def _fixed(*criteria: Any) -> Callable[[datetime], list[Any]]:
    return lambda now: list(criteria)


IMAP_QUERIES: dict[str, tuple[Callable[[datetime], list[Any]], str]] = {
    "invoice": (_fixed("TEXT", "invoice"), ALL),
    "meeting budget": (_fixed("TEXT", "meeting", "TEXT", "budget"), ALL),
    '"budget review"': (_fixed("TEXT", "budget review"), ALL),
    "from:alice": (_fixed("FROM", "alice"), ALL),
    "from:example.com": (_fixed("FROM", "example.com"), ALL),
    "to:olivia": (_fixed("TO", "olivia"), ALL),
    "subject:deadline": (_fixed("SUBJECT", "deadline"), ALL),
    "has:attachment": (_fixed(*HAS_ATTACHMENT), ALL),
    "filename:pdf": (_fixed(*HAS_ATTACHMENT, "TEXT", ".pdf"), ALL),
    "is:unread": (_fixed("UNSEEN"), ALL),
    "is:flagged": (_fixed("FLAGGED"), ALL),
    "in:sent": (_fixed("ALL"), "Sent"),
    "in:inbox invoice": (_fixed("TEXT", "invoice"), "INBOX"),
    "newer_than:30d": (_since(30), ALL),
    "after:2026-01-01 before:2026-02-01": (
        _fixed("SINCE", datetime(2026, 1, 1).date(), "BEFORE", datetime(2026, 2, 1).date()),
        ALL,
    ),
    "larger:1M": (_fixed("LARGER", 1_000_000), ALL),
    "invoice OR payment": (_fixed("OR", "TEXT", "invoice", "TEXT", "payment"), ALL),
    "budget -meeting": (_fixed("TEXT", "budget", "NOT", "TEXT", "meeting"), ALL),
    "café OR zürich": (_fixed("OR", "TEXT", "café", "TEXT", "zürich"), ALL),
    "from:alice has:attachment newer_than:1y": (
        lambda now: ["FROM", "alice", *HAS_ATTACHMENT, "SINCE", (now - timedelta(days=365)).date()],
        ALL,
    ),
}


class ImapSearch:
    """One logged-in connection; ``run`` searches the folders a query covers."""

    def __init__(self, url: str, now: datetime) -> None:
        parts = urlsplit(url)
        self.now = now
        self.client = IMAPClient(parts.hostname or "127.0.0.1", port=parts.port or 143, ssl=False)
        self.client.login(unquote(parts.username or ""), unquote(parts.password or ""))
        self._all = [
            name for flags, _, name in self.client.list_folders() if b"\\Noselect" not in flags
        ]

    def folders(self, which: str) -> list[str]:
        return self._all if which == ALL else [which]

    def render(self, build: Callable[[datetime], list[Any]]) -> str:
        return " ".join(f'"{c}"' if " " in str(c) else str(c) for c in build(self.now))

    def run(self, build: Callable[[datetime], list[Any]], which: str) -> list[int]:
        """UIDs matching in every folder (EXAMINE + UID SEARCH per folder)."""
        criteria, found = build(self.now), []
        charset = "UTF-8" if any(not str(c).isascii() for c in criteria) else None
        for folder in self.folders(which):
            self.client.select_folder(folder, readonly=True)
            found += self.client.search(criteria, charset=charset)
        return found

    def count(self, build: Callable[[datetime], list[Any]], which: str) -> int:
        return len(self.run(build, which))

    def close(self) -> None:
        with suppress(Exception):  # the numbers are printed already
            self.client.logout()
