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
from collections.abc import Sequence

from email_service.mail.query import Term, words

# The runs of characters query.words() reads as words, with their offsets.
WORD_RUN = re.compile(r"[^\W_]+")
# Words of context before the first hit: enough to read it in its sentence.
CONTEXT_WORDS = 6
# Words in a headline: about one line of a message list.
HEADLINE_WORDS = 24
# Characters of a body searched for a hit: bounds the work per result; a hit further
# down (long bodies) gets no headline, the subject is tried instead.
SCAN_CHARS = 50_000
MARK_OPEN, MARK_CLOSE = "<mark>", "</mark>"
ELLIPSIS = "…"
WHITESPACE = re.compile(r"\s+")

Span = tuple[int, int]


def headline(body: str | None, subject: str | None, found: Sequence[Term]) -> str | None:
    """A marked snippet of the body, else the marked subject; None if neither has a hit."""
    body_terms = [words(t.text) for t in found if t.field is None]
    subject_terms = [words(t.text) for t in found if t.field in {None, "subject"}]
    for text, phrases in ((body, body_terms), (subject, subject_terms)):
        if text and phrases:
            snippet = _snippet(unicodedata.normalize("NFC", text[:SCAN_CHARS]), phrases)
            if snippet is not None:
                return snippet
    return None


def _snippet(text: str, phrases: list[list[str]]) -> str | None:
    tokens = _tokens(text)
    hits = _hits([token for token, _ in tokens], phrases)
    if not hits:
        return None
    first = min(start for start, _ in hits)
    begin = max(0, first - CONTEXT_WORDS)
    first_end = max(e for s, e in hits if s == first)
    end = min(len(tokens), max(begin + HEADLINE_WORDS, first_end))
    marks = _merge(
        [(tokens[s][1][0], tokens[e - 1][1][1]) for s, e in hits if s >= begin and e <= end]
    )
    out = _render(text, tokens[begin][1][0], tokens[end - 1][1][1], marks)
    return (ELLIPSIS + " " if begin else "") + out + (" " + ELLIPSIS if end < len(tokens) else "")


def _tokens(text: str) -> list[tuple[str, Span]]:
    """Each word with the span of the run it came from (a run may lower-case to several)."""
    found: list[tuple[str, Span]] = []
    for run in WORD_RUN.finditer(text):
        found.extend((word, run.span()) for word in words(run.group()))
    return found


def _hits(tokens: list[str], phrases: list[list[str]]) -> list[Span]:
    """Token ranges [start, end) where a phrase occurs."""
    starts: dict[str, list[int]] = {}
    for index, token in enumerate(tokens):
        starts.setdefault(token, []).append(index)
    hits: list[Span] = []
    for phrase in phrases:
        if not phrase:
            continue
        for index in starts.get(phrase[0], ()):
            if tokens[index : index + len(phrase)] == phrase:
                hits.append((index, index + len(phrase)))
    return hits


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


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
