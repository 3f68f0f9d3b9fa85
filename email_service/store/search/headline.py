"""Headline snippets: a few words around the first hit, matches in ``<mark>``, HTML-escaped.

Computed in Python from the same words the index holds (``query.words``), so PostgreSQL
and SQLite give the very same headline, and CJK or e-mail addresses are marked exactly
where the search matched them. The text around the marks is escaped: a client may insert
the headline into HTML as it is.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Sequence

from email_service.mail.query import Term, words

# The runs of characters query.words() reads as words, with their offsets.
WORD_RUN = re.compile(r"[^\W_]+")
# Words of context before the first hit: enough to read it in its sentence.
CONTEXT_WORDS = 6
# Characters searched backwards for that context (six long words).
CONTEXT_CHARS = 240
# Words in a headline: about one line of a message list.
HEADLINE_WORDS = 24
# Characters of a body searched for a hit: bounds the work per result; a hit further
# down (long bodies) gets no headline, the subject is tried instead.
SCAN_CHARS = 50_000
MARK_OPEN, MARK_CLOSE = "<mark>", "</mark>"
ELLIPSIS = "…"
WHITESPACE = re.compile(r"\s+")
# Between two adjacent words: anything that is not a word character.
SEPARATOR = r"[\W_]+"

Span = tuple[int, int]


class Headlines:
    """Headlines for the results of one query: its positive Terms, compiled once."""

    def __init__(self, found: Sequence[Term]) -> None:
        self.body = _patterns(t for t in found if t.field is None)
        self.subject = _patterns(t for t in found if t.field in {None, "subject"})

    def headline(self, body: str | None, subject: str | None) -> str | None:
        """A marked snippet of the body, else the marked subject; None if neither has a hit."""
        for text, patterns in ((body, self.body), (subject, self.subject)):
            if text and patterns:
                snippet = _snippet(unicodedata.normalize("NFC", text[:SCAN_CHARS]), patterns)
                if snippet is not None:
                    return snippet
        return None


def _patterns(found: Iterable[Term]) -> list[re.Pattern[str]]:
    """Per phrase: its words as whole words, separated by non-word characters.

    The first word comes first in the pattern (a literal prefix lets ``re`` skip ahead
    fast); the look-behind after it checks that no word character precedes it.
    """
    patterns = []
    for phrase in {tuple(words(term.text)) for term in found}:
        if phrase:
            first = re.escape(phrase[0])
            rest = "".join(SEPARATOR + re.escape(word) for word in phrase[1:])
            patterns.append(re.compile(rf"{first}(?<![^\W_]{first}){rest}(?![^\W_])"))
    return patterns


def _snippet(text: str, patterns: list[re.Pattern[str]]) -> str | None:
    """Window around the first hit; ``text`` is NFC, the patterns run on its lower case."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a letter lower-cases to several (İ): offsets would drift
        text, lowered = _one_per_word(text)
    firsts = [hit for hit in (p.search(lowered) for p in patterns) if hit is not None]
    if not firsts:
        return None
    first = min(firsts, key=lambda hit: (hit.start(), -hit.end()))
    before = list(WORD_RUN.finditer(lowered, max(0, first.start() - CONTEXT_CHARS), first.start()))
    begin = before[-CONTEXT_WORDS].start() if len(before) >= CONTEXT_WORDS else (
        before[0].start() if before else first.start())  # fmt: skip
    end = first.end()
    for count, run in enumerate(WORD_RUN.finditer(lowered, begin), 1):
        end = max(end, run.end())
        if count >= HEADLINE_WORDS and end >= first.end():
            break
    marks = _merge([hit.span() for p in patterns for hit in p.finditer(lowered, begin, end)])
    head = ELLIPSIS + " " if WORD_RUN.search(lowered, 0, begin) else ""
    tail = " " + ELLIPSIS if WORD_RUN.search(lowered, end) else ""
    return head + _render(text, begin, end, marks) + tail


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _one_per_word(text: str) -> tuple[str, str]:
    """Text and its lower case of equal length: runs that grow when lower-cased are shown
    as their words (``İstanbul`` as ``i stanbul``), the rest as written."""
    pieces, at = [], 0
    for run in WORD_RUN.finditer(text):
        if len(run.group().lower()) != len(run.group()):
            pieces += [text[at : run.start()], " ".join(words(run.group()))]
            at = run.end()
    rebuilt = "".join([*pieces, text[at:]])
    return rebuilt, rebuilt.lower()


def _render(text: str, start: int, end: int, marks: list[Span]) -> str:
    """text[start:end] escaped, with whitespace collapsed and the marked spans wrapped."""
    pieces: list[str] = []
    at = start
    for mark_start, mark_end in marks:
        pieces.append(_plain(text[at:mark_start]))
        pieces.append(MARK_OPEN + _plain(text[mark_start:mark_end]) + MARK_CLOSE)
        at = mark_end
    pieces.append(_plain(text[at:end]))
    return "".join(pieces)


def _plain(text: str) -> str:
    return html.escape(WHITESPACE.sub(" ", text))
