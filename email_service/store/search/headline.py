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
# What holds a mark's place while a window is escaped (_render): control characters that
# html.escape leaves alone and that are not whitespace.
STAND_IN_OPEN, STAND_IN_CLOSE = "\x00", "\x01"
ELLIPSIS = "…"
WHITESPACE = re.compile(r"\s+")
# Between two adjacent words: anything that is not a word character.
SEPARATOR = r"[\W_]+"
# Up to CONTEXT_WORDS words (runs of WORD_RUN) read backwards, and up to HEADLINE_WORDS
# forwards: one match each, where finding every word on the way took a match per word.
CONTEXT_BACK = re.compile(rf"(?:[\W_]*[^\W_]+){{1,{CONTEXT_WORDS}}}")
HEADLINE_AHEAD = re.compile(rf"(?:[\W_]*[^\W_]+){{1,{HEADLINE_WORDS}}}")
# str.lower of each Latin-1 character, as a byte table (each is one Latin-1 character).
LATIN1_LOWER = bytes(ord(chr(code).lower()) for code in range(256))

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
                snippet = _snippet(*_folded(text[:SCAN_CHARS]), patterns)
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


def _folded(text: str) -> tuple[str, str]:
    """The text in NFC and its lower case (``str.lower``).

    Text within Latin-1 (most Western mail) is NFC already (no combining marks; no two of
    its characters compose) and lower-cases one character to one within Latin-1, so a
    byte table does it, four times faster than ``str.lower`` on such text, and NFC is
    not computed (a test checks both facts for every Latin-1 character and pair).
    """
    try:
        latin = text.encode("latin-1")
    except UnicodeEncodeError:
        normal = unicodedata.normalize("NFC", text)
        return normal, normal.lower()
    return text, latin.translate(LATIN1_LOWER).decode("latin-1")


def _snippet(text: str, lowered: str, patterns: list[re.Pattern[str]]) -> str | None:
    """Window around the first hit; ``text`` is NFC, the patterns run on ``lowered``,
    its lower case."""
    if len(lowered) != len(text):  # a letter lower-cases to several (İ): offsets would drift
        text, lowered = _one_per_word(text)
    firsts = [hit for hit in (p.search(lowered) for p in patterns) if hit is not None]
    if not firsts:
        return None
    first = min(firsts, key=lambda hit: (hit.start(), -hit.end()))
    start = first.start()
    # the context: back over up to CONTEXT_WORDS words, read in the reversed text before
    # the hit (its last CONTEXT_CHARS characters); a word cut there starts at the cut
    back = CONTEXT_BACK.match(lowered[max(0, start - CONTEXT_CHARS) : start][::-1])
    begin = start - back.end() if back else start
    ahead = HEADLINE_AHEAD.match(lowered, begin)  # HEADLINE_WORDS words from there
    end = max(first.end(), ahead.end()) if ahead else first.end()
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
    """text[start:end] escaped, with whitespace collapsed and the marked spans wrapped.

    The window is escaped in one pass, its marks held by two stand-in characters that are
    neither whitespace nor escaped (a whitespace run never crosses a mark's edge, which is
    a word character, so collapsing runs of the whole is collapsing them piece by piece).
    A window that holds a stand-in itself is rendered piece by piece.
    """
    window = text[start:end]
    if STAND_IN_OPEN in window or STAND_IN_CLOSE in window:
        return _render_pieces(text, start, end, marks)
    pieces: list[str] = []
    at = start
    for mark_start, mark_end in marks:
        pieces += (text[at:mark_start], STAND_IN_OPEN, text[mark_start:mark_end], STAND_IN_CLOSE)
        at = mark_end
    pieces.append(text[at:end])
    marked = _plain("".join(pieces))
    return marked.replace(STAND_IN_OPEN, MARK_OPEN).replace(STAND_IN_CLOSE, MARK_CLOSE)


def _render_pieces(text: str, start: int, end: int, marks: list[Span]) -> str:
    """:func:`_render`, each piece escaped on its own."""
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
