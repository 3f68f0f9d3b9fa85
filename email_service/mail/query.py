"""Gmail-style search syntax, parsed into the tree of :mod:`email_service.mail.query_ast`.

What each node means (words, fields, folders, dates) is documented there; this module is
only the syntax. Grammar, loosest binding first::

    query    := conj? END
    conj     := disj (["AND"] disj)*            implicit AND between terms
    disj     := unary (("OR" | "|") unary)*     OR binds tighter, as in Gmail:
                                                ``a b OR c`` is ``a (b OR c)``
    unary    := "-" unary | primary             ``-`` negates only when a term follows at once
    primary  := "(" conj ")" | PHRASE | OPERATOR | WORD
    OPERATOR := NAME ":" (WORD | PHRASE | "(" values ")")

Whitespace and ``( ) " |`` end a word; a PHRASE runs from ``"`` to the next ``"`` (no
escapes); search text has its whitespace collapsed, folder and label names are kept as
is. ``OR`` and ``AND`` are keywords only in upper case. ``from:(alice OR bob)`` applies the
operator to each word or phrase of the group, which may use ``-``, OR, AND and parentheses
but no other operator. Operator names and the ``is:``/``has:`` values ignore case; an
unknown ``word:`` is free text (``http://x``, ``re:``), as in Gmail. Free words without a
letter or digit (``&``, a lone ``-``) are ignored, as the backends' tokenizers would; a
query of nothing else matches everything.

Operators: ``from: to: cc: bcc: subject: filename:`` (a Term in that field),
``has:attachment``, ``in:<folder or role>``, ``label:<keyword>``, ``is:read|unread|flagged|
unflagged|starred|unstarred|answered|unanswered|draft``; ``before:``/``after:`` a date
``YYYY-MM-DD`` or ``YYYY/MM/DD`` (midnight in the time zone of ``now``; ``before`` is
exclusive, ``after`` inclusive) or an ISO 8601 datetime; ``older_than:``/``newer_than:``
``<n>h|d|w|m|y`` back from ``now`` (h, d, w elapsed; m, y calendar months in its zone);
``larger:``/``smaller:`` octets, with optional ``K``, ``M`` or ``G`` (powers of 1024) and
``B``; ``message-id:`` (alias ``rfc822msgid:``).

Errors are :class:`QuerySyntaxError` with the 0-based ``position`` in the query string of
the offending character (the unclosed ``(`` or ``"``, the dangling ``OR``, the first
character of a bad value, or where a missing value was expected).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime

from email_service.mail import query_values
from email_service.mail.query_ast import (
    DELIMITERS,
    KEYWORDS,
    MATCH_ALL,
    OPERATOR_NAMES,
    And,
    DateCmp,
    Flag,
    Folder,
    HasAttachment,
    Label,
    MessageId,
    Node,
    Not,
    Or,
    QuerySyntaxError,
    SizeCmp,
    Term,
    and_,
    not_,
    or_,
    terms,
    to_text,
    words,
)

__all__ = [
    "And",
    "DateCmp",
    "Flag",
    "Folder",
    "HasAttachment",
    "Label",
    "MessageId",
    "Node",
    "Not",
    "Or",
    "QuerySyntaxError",
    "SizeCmp",
    "Term",
    "parse",
    "terms",
    "to_text",
    "words",
]

# Longer than any hand-written query; bounds parse time and the SQL compiled from it.
MAX_QUERY_LENGTH = 1000
# Search conditions (words, phrases, operators) per query; a person writes a handful.
MAX_TERMS = 64
# Nesting of parentheses and negations; deeper is machine-made, and it bounds recursion.
MAX_DEPTH = 16


# (value text, position of its first character, quoted) -> node, or None to ignore it.
Leaf = Callable[[str, int, bool], Node | None]


def parse(query: str, now: datetime) -> Node:
    """Parse a search query; relative dates count back from ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    _check_characters(query)
    parser = _Parser(query, now)
    node = parser.conj(parser.free_leaf, opener=None)
    if parser.pos < len(query):
        raise QuerySyntaxError("unexpected ')' without a matching '('", parser.pos)
    return MATCH_ALL if node is None else node


def _check_characters(query: str) -> None:
    if len(query) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(
            f"query too long: expected at most {MAX_QUERY_LENGTH} characters", MAX_QUERY_LENGTH
        )
    for index, char in enumerate(query):
        if unicodedata.category(char) == "Cc" and not char.isspace():
            raise QuerySyntaxError("unexpected control character", index)


class _Parser:
    """Recursive descent over the query string; ``pos`` is the next unread character."""

    def __init__(self, text: str, now: datetime) -> None:
        self.text = text
        self.now = now
        self.pos = 0
        self.depth = 0
        self.leaves = 0

    def conj(self, leaf: Leaf, opener: int | None) -> Node | None:
        """Terms joined by implicit or explicit AND, up to ')' or the end."""
        parts: list[Node | None] = []
        self.skip_space()
        if self.at_group_end() and opener is not None:
            raise QuerySyntaxError("expected a search term between '(' and ')'", opener)
        while not self.at_group_end():
            keyword = self.peek_keyword()
            if keyword is not None and (keyword[0] != "AND" or not parts):
                raise QuerySyntaxError(f"expected a search term before {keyword[0]}", self.pos)
            if keyword is not None:
                self.after_keyword(keyword)
            parts.append(self.disj(leaf))
            self.skip_space()
        found = [node for node in parts if node is not None]
        return and_(*found) if found else None

    def disj(self, leaf: Leaf) -> Node | None:
        """Terms joined by OR or '|'."""
        parts = [self.unary(leaf)]
        self.skip_space()
        while (keyword := self.peek_keyword()) is not None and keyword[0] == "OR":
            self.after_keyword(keyword)
            parts.append(self.unary(leaf))
            self.skip_space()
        found = [node for node in parts if node is not None]
        return or_(*found) if found else None

    def after_keyword(self, keyword: tuple[str, int]) -> None:
        """Step over OR/AND; a term must follow, not the end, ')' or another keyword."""
        start, self.pos = self.pos, keyword[1]
        self.skip_space()
        if self.at_group_end() or self.peek_keyword() is not None:
            raise QuerySyntaxError(f"expected a search term after {keyword[0]}", start)

    def unary(self, leaf: Leaf) -> Node | None:
        """A primary, negated by each '-' written directly before it."""
        if self.text.startswith("-", self.pos) and self.starts_operand(self.pos + 1):
            saved = self.enter(self.pos)
            self.pos += 1
            node = self.unary(leaf)
            self.depth = saved
            return None if node is None else not_(node)
        return self.primary(leaf)

    def primary(self, leaf: Leaf) -> Node | None:
        """A group, a phrase or a word (which may be an operator)."""
        start = self.pos
        if self.text.startswith("(", start):
            return self.group(leaf)
        if self.text.startswith('"', start):
            return leaf(self.phrase(), start + 1, True)
        return leaf(self.word(), start, False)

    def group(self, leaf: Leaf) -> Node | None:
        """'(' conj ')'."""
        opener = self.pos
        saved = self.enter(opener)
        self.pos += 1
        node = self.conj(leaf, opener)
        if not self.text.startswith(")", self.pos):
            raise QuerySyntaxError("'(' is never closed: expected ')'", opener)
        self.pos += 1
        self.depth = saved
        return node

    def phrase(self) -> str:
        """The text between double quotes."""
        end = self.text.find('"', self.pos + 1)
        if end < 0:
            raise QuerySyntaxError("'\"' is never closed: expected a closing '\"'", self.pos)
        raw = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return raw

    def word(self) -> str:
        """Characters up to the next whitespace or delimiter."""
        start = self.pos
        while not self.is_boundary(self.pos):
            self.pos += 1
        return self.text[start : self.pos]

    def free_leaf(self, text: str, start: int, quoted: bool) -> Node | None:
        """A top-level word or phrase: an operator, or free text."""
        name, colon, value = text.partition(":")
        if not quoted and colon and name.casefold() in OPERATOR_NAMES:
            return self.operator(name.casefold(), value, start + len(name) + 1)
        text = " ".join(text.split())
        return self.counted(Term(text), start) if words(text) else None

    def operator(self, name: str, value: str, start: int) -> Node | None:
        """``name:`` followed by a word, a phrase or a group of values."""
        build = query_values.builder(name, self.now)

        def value_leaf(text: str, position: int, quoted: bool) -> Node:
            prefix, colon, _ = text.partition(":")
            if not quoted and colon and prefix.casefold() in OPERATOR_NAMES:
                raise QuerySyntaxError(f"expected a value for {name}:, not an operator", position)
            return self.counted(build(text, position), position)

        if value:
            return value_leaf(value, start, True)
        if self.text.startswith('"', self.pos):
            return value_leaf(self.phrase(), start + 1, True)
        if self.text.startswith("(", self.pos):
            return self.group(value_leaf)
        raise QuerySyntaxError(f"expected a value after {name}:", start)

    def counted(self, node: Node, start: int) -> Node:
        """Count a search condition against MAX_TERMS."""
        self.leaves += 1
        if self.leaves > MAX_TERMS:
            raise QuerySyntaxError(f"too many search terms: expected at most {MAX_TERMS}", start)
        return node

    def enter(self, position: int) -> int:
        """One level deeper; returns the depth to restore."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QuerySyntaxError(f"nested too deeply: expected at most {MAX_DEPTH}", position)
        return self.depth - 1

    def peek_keyword(self) -> tuple[str, int] | None:
        """The OR/AND keyword ('|' is OR) at ``pos`` and where it ends, if there is one."""
        if self.text.startswith("|", self.pos):
            return "OR", self.pos + 1
        end = self.pos
        while not self.is_boundary(end):
            end += 1
        word = self.text[self.pos : end]
        return (word, end) if word in KEYWORDS else None

    def is_boundary(self, index: int) -> bool:
        """Whether a word cannot continue at ``index``."""
        if index >= len(self.text):
            return True
        char = self.text[index]
        return char.isspace() or char in DELIMITERS

    def starts_operand(self, index: int) -> bool:
        """Whether a term can start at ``index``: not the end, whitespace, ')' or '|'."""
        return index < len(self.text) and not (
            self.text[index].isspace() or self.text[index] in ")|"
        )

    def at_group_end(self) -> bool:
        """At the end of the query or at ')'."""
        return self.pos >= len(self.text) or self.text[self.pos] == ")"

    def skip_space(self) -> None:
        """Advance past whitespace."""
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
