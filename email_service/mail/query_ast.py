"""The search query tree: what each node means, whatever backend answers it.

PostgreSQL full-text and SQLite FTS5 both compile this tree and must return the same
messages, so the meaning of every node is pinned here, not in either backend.

Words
    Text is compared word by word. :func:`words` is the definition: after NFC
    normalisation, a word is a maximal run of Unicode letters and digits, lower-cased;
    everything else (spaces, punctuation, ``@``, ``.``, ``-``, ``_``) separates words.
    No stemming, no stop words, no prefix matching; accents count (``café`` is not
    ``cafe``). ``Alice@Example.com`` is the words ``alice example com``.

Nodes
    ``Term(text, field)``
        The words of ``text`` occur in the field as whole words, adjacent and in this
        order (one word: it occurs). A quoted phrase and an unquoted ``foo-bar`` or
        ``alice@example.com`` are both Terms of several words. A match never spans two
        separate values (two recipients, two attachments, subject and body). Fields:

        - ``None``: all text — subject, body text, the names and addresses of from, to,
          cc and bcc, and attachment file names;
        - ``from``/``to``/``cc``/``bcc``: the display name or the address of one
          sender/recipient in that header (``from:example.com`` matches every sender at
          that domain, ``from:alice`` Alice's name or ``alice@...``);
        - ``subject``; ``filename``: the file name of one attachment.
    ``Flag(name, value)``
        The IMAP system flag ``\\<name>`` (``seen``, ``flagged``, ``answered``,
        ``draft``) is set (value True) or not set (False). RFC 9051 §2.3.2.
    ``HasAttachment()``
        The message has at least one attachment.
    ``Folder(name)``
        The message is in a folder whose full name equals ``name`` ignoring case, or
        whose special-use role (RFC 6154 §2, plus ``inbox``) is ``Folder(name).role``:
        ``in:inbox``, ``in:sent``, ``in:trash``, ``in:spam`` reach the folder with that
        role whatever the server calls it.
    ``Label(name)``
        The message carries the IMAP keyword ``name`` (RFC 9051 §2.3.2), ignoring case.
    ``DateCmp(op, at)``
        The received date (IMAP INTERNALDATE, RFC 9051 §2.3.3) is before ``at``
        (op ``"<"``) or at/after it (op ``">="``); ``at`` is an aware UTC datetime.
    ``SizeCmp(op, size)``
        The message size in octets (RFC822.SIZE, RFC 9051 §2.3.4) is ``> size`` or
        ``< size``.
    ``MessageId(value)``
        The Message-ID, in ``<id>`` form with spaces removed, equals ``value`` exactly.
    ``Not(node)``: node does not match. ``And(children)``: every child matches;
    ``And(())`` matches every message (the empty query). ``Or(children)``: some child
    matches; ``Or(())`` matches none.

Trees built by :func:`and_`, :func:`or_` and :func:`not_` are normalised: nested And/Or
flattened, duplicate children dropped, single children unwrapped, double negation removed,
a negated Flag folded into the opposite Flag. :func:`to_text` renders such a tree as query
text that parses back to the same tree.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from email_service.errors import BadRequestError

# Fields a Term may search; None is all text (see the module docstring).
TEXT_FIELDS = frozenset({"from", "to", "cc", "bcc", "subject", "filename"})
# is: values and the flag each one tests; the first word per flag state is the canonical one.
IS_VALUES: dict[str, tuple[str, bool]] = {
    "read": ("seen", True),
    "unread": ("seen", False),
    "flagged": ("flagged", True),
    "starred": ("flagged", True),
    "unflagged": ("flagged", False),
    "unstarred": ("flagged", False),
    "answered": ("answered", True),
    "unanswered": ("answered", False),
    "draft": ("draft", True),
}
# in: words naming a special-use role (RFC 6154 §2) rather than a folder name.
FOLDER_ROLES = {
    "inbox": "inbox",
    "sent": "sent",
    "drafts": "drafts",
    "draft": "drafts",
    "trash": "trash",
    "spam": "junk",
    "junk": "junk",
    "archive": "archive",
    "all": "all",
}
# Every operator name the parser knows; free text that starts with one must be quoted.
OPERATOR_NAMES = TEXT_FIELDS | {
    "has",
    "in",
    "is",
    "label",
    "before",
    "after",
    "older_than",
    "newer_than",
    "larger",
    "smaller",
    "message-id",
    "rfc822msgid",
}
# Uppercase keywords; the same words in lower case are ordinary search words (as in Gmail).
KEYWORDS = frozenset({"OR", "AND"})
# Characters that end an unquoted word.
DELIMITERS = frozenset('()"|')
# What separates words: runs of anything but letters and digits. Splitting on these gives
# the words ``[^\W_]+`` finds (plus an empty string at either end), about twice as fast.
_NON_WORD = re.compile(r"[\W_]+")


class QuerySyntaxError(BadRequestError):
    """A search query that does not parse; ``position`` is the 0-based offending index."""

    code = "query_syntax"

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})", "query", position=position)
        self.position = position


@dataclass(frozen=True)
class Term:
    """Words searched adjacent and in order, in one field or (field None) all text."""

    text: str
    field: str | None = None


@dataclass(frozen=True)
class Flag:
    """An IMAP system flag set (True) or not set (False)."""

    name: str
    value: bool


@dataclass(frozen=True)
class HasAttachment:
    """The message has at least one attachment."""


@dataclass(frozen=True)
class Folder:
    """The message is in the folder so named, or with that role."""

    name: str

    @property
    def role(self) -> str | None:
        """The special-use role this name stands for, if any (``spam`` → ``junk``)."""
        return FOLDER_ROLES.get(self.name.casefold())


@dataclass(frozen=True)
class Label:
    """The message carries this IMAP keyword."""

    name: str


@dataclass(frozen=True)
class DateCmp:
    """The received date is before (``<``) or at/after (``>=``) an instant."""

    op: Literal["<", ">="]
    at: datetime


@dataclass(frozen=True)
class SizeCmp:
    """The message size is larger (``>``) or smaller (``<``) than a number of octets."""

    op: Literal["<", ">"]
    size: int


@dataclass(frozen=True)
class MessageId:
    """The message has exactly this Message-ID (``<id>`` form)."""

    value: str


@dataclass(frozen=True)
class Not:
    """The child does not match."""

    node: Node


@dataclass(frozen=True)
class And:
    """Every child matches; no children matches everything."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Some child matches; no children matches nothing."""

    children: tuple[Node, ...]


Node = Term | Flag | HasAttachment | Folder | Label | DateCmp | SizeCmp | MessageId | Not | And | Or
MATCH_ALL = And(())


def words(text: str) -> list[str]:
    """The words a Term's text stands for: runs of letters and digits, lower-cased."""
    found = _NON_WORD.split(unicodedata.normalize("NFC", text).lower())
    if not found[-1]:  # the text ended with a separator, or was empty
        found.pop()
    if found and not found[0]:  # it began with one
        del found[0]
    return found


def and_(*nodes: Node) -> Node:
    """Normalised conjunction: flattened, deduplicated, unwrapped when single."""
    return _join(And, nodes)


def or_(*nodes: Node) -> Node:
    """Normalised disjunction: flattened, deduplicated, unwrapped when single."""
    return _join(Or, nodes)


def _join(kind: type[And] | type[Or], nodes: tuple[Node, ...]) -> Node:
    absorbing = Or(()) if kind is And else And(())
    children: dict[Node, None] = {}
    for node in nodes:
        if node == absorbing:
            return absorbing
        for child in node.children if isinstance(node, kind) else (node,):
            children.setdefault(child, None)
    if len(children) == 1:
        return next(iter(children))
    return kind(tuple(children))


def not_(node: Node) -> Node:
    """Normalised negation: no double negation, a negated Flag becomes the opposite Flag."""
    if isinstance(node, Not):
        return node.node
    if isinstance(node, Flag):
        return Flag(node.name, not node.value)
    if node == And(()):
        return Or(())
    if node == Or(()):
        return And(())
    return Not(node)


def terms(node: Node) -> list[Term]:
    """The Terms a message must match positively (not under a negation), for highlighting."""
    found: dict[Term, None] = {}
    _collect_terms(node, found)
    return list(found)


def _collect_terms(node: Node, found: dict[Term, None]) -> None:
    if isinstance(node, Term):
        found.setdefault(node, None)
    elif isinstance(node, And | Or):
        for child in node.children:
            _collect_terms(child, found)


def to_text(node: Node) -> str:
    """Canonical query text for a normalised tree; ``parse`` gives the tree back."""
    if node == And(()):
        return ""
    return _render(node)


def _render(node: Node) -> str:
    match node:
        case Term(text, None):
            return _value(text, free=True)
        case Term(text, field):
            return f"{field}:{_value(text, free=False)}"
        case Flag():
            return _render_flag(node)
        case HasAttachment():
            return "has:attachment"
        case Folder(name):
            return f"in:{_value(name, free=False)}"
        case Label(name):
            return f"label:{_value(name, free=False)}"
        case DateCmp(op, at):
            stamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
            return f"{'before' if op == '<' else 'after'}:{stamp}"
        case SizeCmp(op, size):
            return f"{'larger' if op == '>' else 'smaller'}:{size}"
        case MessageId(value):
            return f"message-id:{_value(value, free=False)}"
        case Not(child):
            return "-" + _grouped(child, (And, Or))
        case And(children) if children:
            return " ".join(_grouped(child, (And, Or)) for child in children)
        case Or(children) if children:
            return " OR ".join(_grouped(child, (And,)) for child in children)
    raise ValueError(f"{node!r} has no query text (an empty And or Or inside a tree)")


def _grouped(node: Node, kinds: tuple[type[And] | type[Or], ...]) -> str:
    text = _render(node)
    return f"({text})" if isinstance(node, kinds) else text


def _render_flag(flag: Flag) -> str:
    for word, meaning in IS_VALUES.items():
        if meaning == (flag.name, flag.value):
            return f"is:{word}"
    for word, meaning in IS_VALUES.items():
        if meaning == (flag.name, not flag.value):
            return f"-is:{word}"
    raise ValueError(f"no is: value for flag {flag.name!r}")


def _value(text: str, *, free: bool) -> str:
    """The text bare when it would read back as itself, else in double quotes."""
    if '"' in text:
        raise ValueError(f"a double quote cannot be written inside a query value: {text!r}")
    if _is_bare(text, free=free):
        return text
    return f'"{text}"'


def _is_bare(text: str, *, free: bool) -> bool:
    if not text or any(c.isspace() or c in DELIMITERS for c in text):
        return False
    if not free:
        return True
    prefix, colon, _ = text.partition(":")
    has_operator = bool(colon) and prefix.casefold() in OPERATOR_NAMES
    return not (text.startswith("-") or text in KEYWORDS or has_operator)
