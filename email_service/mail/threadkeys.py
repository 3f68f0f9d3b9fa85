"""What threading links messages by: Message-IDs, References chains and subject keys.

Message-IDs are kept in ``<id>`` form with any whitespace removed (the form the MIME
parser stores), and compared exactly. Two messages are *linked* when

- their id sets meet: a message's id set is its own Message-ID plus every id in its
  References/In-Reply-To (so a reply links to its parent, two replies to a parent not yet
  seen link to each other, and the same message stored in two folders links to itself); or
- :func:`subject_linked`: the JWZ subject fallback, narrowed. It needs a *subject orphan*,
  a message with neither References nor In-Reply-To whose subject is a reply (``Re:``,
  ``AW:``, ``SV:``, ``Antw:``), and links it to any message with the same
  :func:`normalize_subject` key dated within ``SUBJECT_WINDOW`` of it. Two original posts
  that merely share a subject ("Hello", "Invoice") are never linked.

A thread is a connected component of this relation, so which thread a message ends in does
not depend on the order in which messages arrive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

# RFC 5322 §2.1.1: a line, hence a msg-id, has at most 998 characters; longer is garbage.
MAX_MESSAGE_ID_LENGTH = 998
# JWZ needs the root and the nearest ancestors; a longer chain is a DoS, not history. The
# first id and the last ones are kept, as netnews trims References (RFC 5537 §3.4.4).
MAX_REFERENCES = 100
# A reply that lost its headers arrives within days of the thread; a longer window starts
# joining unrelated recurring subjects ("Re: weekly report").
SUBJECT_WINDOW = timedelta(days=7)
# Only this much of a subject is examined: enough to identify a conversation, and it bounds
# the prefix-stripping loop on hostile input.
MAX_SUBJECT_LENGTH = 1000
# RFC 5322 §3.6.4 msg-id: "<" id-left "@" id-right ">"; the inside is matched loosely.
MSG_ID = re.compile(r"<([^<>]*)>")
# One leading prefix: a reply or forward marker (with an optional counter such as "Re[2]:"
# or "Re^2:"), a mailing-list tag "[list]", or "(fwd)". The colon may be full-width.
SUBJECT_PREFIX = re.compile(
    r"(?:(?P<reply>re|aw|sv|antw)|fwd?|wg|tr)\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:\uff1a]\s*"
    r"|\[[^\[\]]{0,80}\]\s*|\(fwd\)\s*",
    re.IGNORECASE,
)
SUBJECT_SUFFIX = re.compile(r"(?:\s*\(fwd\))+$", re.IGNORECASE)


def clean_message_id(value: str | None) -> str | None:
    """The first msg-id in a header value, as ``<id>`` without whitespace; None if garbage."""
    if not value:
        return None
    match = MSG_ID.search(value)
    if match is not None:
        return _bracketed("".join(match.group(1).split()))
    bare = value.strip()
    if "@" in bare and not any(c.isspace() or c in "<>" for c in bare):
        return _bracketed(bare)
    return None


def _bracketed(ident: str) -> str | None:
    if not ident or len(ident) + 2 > MAX_MESSAGE_ID_LENGTH or not ident.isprintable():
        return None
    return f"<{ident}>"


def parse_references(references: str | None, in_reply_to: str | None) -> list[str]:
    """Ancestor ids, root first and parent last (RFC 5322 §3.6.4), deduplicated and capped."""
    found = _id_list(references)
    parent = clean_message_id(in_reply_to)
    if parent is not None and parent not in found:
        found.append(parent)
    unique = list(dict.fromkeys(found))
    if len(unique) > MAX_REFERENCES:
        unique = unique[:1] + unique[-(MAX_REFERENCES - 1) :]
    return unique


def _id_list(value: str | None) -> list[str]:
    """Every msg-id of a field; without any ``<...>``, the tokens that contain an ``@``."""
    if not value:
        return []
    tokens = MSG_ID.findall(value)
    if tokens:
        cleaned = (_bracketed("".join(token.split())) for token in tokens)
    else:
        cleaned = (clean_message_id(token) for token in re.split(r"[\s,]+", value))
    return [ident for ident in cleaned if ident is not None]


def normalize_subject(subject: str | None) -> str:
    """The subject without Re:/Fwd:/AW:/SV:/Antw:/[list] prefixes, (fwd), case and extra space."""
    return _strip_subject(subject)[0]


def is_reply_subject(subject: str | None) -> bool:
    """Whether the first marker of the subject (after list tags) is a reply prefix."""
    return _strip_subject(subject)[1]


def _strip_subject(subject: str | None) -> tuple[str, bool]:
    text = " ".join((subject or "")[:MAX_SUBJECT_LENGTH].split())
    pos, reply, decided = 0, False, False
    while match := SUBJECT_PREFIX.match(text, pos):
        if not decided and not match.group().startswith(("[", "(")):
            reply, decided = match.group("reply") is not None, True
        pos = match.end()
    key = SUBJECT_SUFFIX.sub("", text[pos:]).strip()
    return key.casefold(), reply


@dataclass(frozen=True)
class ThreadInput:
    """One stored message as threading sees it; ``key`` is the store's id for it."""

    key: str
    message_id: str | None = None
    references: tuple[str, ...] = ()
    subject: str = ""
    date: datetime | None = None

    def __post_init__(self) -> None:
        if self.date is not None and self.date.tzinfo is None:
            raise ValueError("ThreadInput.date must be timezone-aware")

    @classmethod
    def from_headers(
        cls,
        key: str,
        *,
        message_id: str | None = None,
        references: str | None = None,
        in_reply_to: str | None = None,
        subject: str | None = None,
        date: datetime | None = None,
    ) -> ThreadInput:
        """Build from raw header values, cleaning ids and references."""
        refs = tuple(parse_references(references, in_reply_to))
        return cls(key, clean_message_id(message_id), refs, subject or "", date)

    @property
    def parent_ids(self) -> tuple[str, ...]:
        """The references without the message's own id, parent last."""
        return tuple(ref for ref in self.references if ref != self.message_id)

    @property
    def link_ids(self) -> frozenset[str]:
        """The id set: own Message-ID and every referenced id."""
        own = () if self.message_id is None else (self.message_id,)
        return frozenset((*own, *self.references))

    @property
    def subject_key(self) -> str:
        """The normalised subject the fallback compares."""
        return normalize_subject(self.subject)

    @property
    def is_subject_orphan(self) -> bool:
        """No References nor In-Reply-To, and a reply subject: the fallback may link it."""
        return not self.parent_ids and is_reply_subject(self.subject)


def subject_linked(a: ThreadInput, b: ThreadInput) -> bool:
    """Whether the subject fallback links two messages (see the module docstring)."""
    if a.date is None or b.date is None or not a.subject_key:
        return False
    close = abs(a.date - b.date) <= SUBJECT_WINDOW
    same = a.subject_key == b.subject_key
    return close and same and (a.is_subject_orphan or b.is_subject_orphan)


def partition(assignment: dict[str, str]) -> set[frozenset[str]]:
    """Group keys by their thread: the partition a key → thread mapping describes."""
    groups: dict[str, set[str]] = {}
    for key, thread in assignment.items():
        groups.setdefault(thread, set()).add(key)
    return {frozenset(keys) for keys in groups.values()}
