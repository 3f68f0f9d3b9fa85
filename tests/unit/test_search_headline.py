"""Headline snippets: the shortcuts of store/search/headline.py give what a plain walk gives.

The window around the first hit is found with one match backwards and one forwards, and
text within Latin-1 is lower-cased by a byte table without NFC: each is checked here
against the straightforward computation (NFC, ``str.lower``, one word at a time).
"""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from email_service.mail.query import Term
from email_service.store.search import headline
from email_service.store.search.headline import (
    CONTEXT_CHARS,
    CONTEXT_WORDS,
    HEADLINE_WORDS,
    WORD_RUN,
    Headlines,
)

LATIN1 = [chr(code) for code in range(256)]


def test_latin1_text_is_nfc_and_lower_cases_within_latin1() -> None:
    """The two facts behind the byte table: a test that fails if Unicode ever changes them."""
    for char in LATIN1:
        assert len(char.lower()) == 1 and ord(char.lower()) < 256, char
        for other in LATIN1:
            pair = char + other
            assert unicodedata.normalize("NFC", pair) == pair, pair


@pytest.mark.parametrize(
    "text",
    ["Ünïcode ÉCOLE façade ÿ ß µ", "ASCII Only", "İstanbul ΣΊΣΥΦΟΣ", "e\u0301clair Ǆ", ""],
)
def test_folded_is_nfc_and_its_lower_case(text: str) -> None:
    normal = unicodedata.normalize("NFC", text)
    assert headline._folded(text) == (normal, normal.lower())


def _reference_window(lowered: str, start: int, end: int) -> tuple[int, int]:
    """The window as a word-by-word walk finds it (begin, end)."""
    before = list(WORD_RUN.finditer(lowered, max(0, start - CONTEXT_CHARS), start))
    begin = before[-CONTEXT_WORDS].start() if len(before) >= CONTEXT_WORDS else (
        before[0].start() if before else start)  # fmt: skip
    last = end
    for count, run in enumerate(WORD_RUN.finditer(lowered, begin), 1):
        last = max(last, run.end())
        if count >= HEADLINE_WORDS:
            break
    return begin, last


def _reference(terms: list[Term], body: str) -> str | None:
    """The headline cut from the window of the plain walk, with the module's own rendering."""
    patterns = headline._patterns(terms)
    text = unicodedata.normalize("NFC", body)
    lowered = text.lower()
    if len(lowered) != len(text):
        text, lowered = headline._one_per_word(text)
    firsts = [hit for hit in (p.search(lowered) for p in patterns) if hit is not None]
    if not firsts:
        return None
    first = min(firsts, key=lambda hit: (hit.start(), -hit.end()))
    begin, end = _reference_window(lowered, first.start(), first.end())
    marks = headline._merge([h.span() for p in patterns for h in p.finditer(lowered, begin, end)])
    head = "… " if WORD_RUN.search(lowered, 0, begin) else ""
    tail = " …" if WORD_RUN.search(lowered, end) else ""
    return head + headline._render(text, begin, end, marks) + tail


WORDS = ["invoice", "budget", "review", "Café", "zürich", "the", "a", "of", "x" * 40, "İ", "Σ"]
GLUE = [" ", " ", ", ", " — ", "\n\n", "_", "--", ". ", "e\u0301 ", "  "]


def _body(rng: random.Random) -> str:
    count = rng.randint(0, 90)
    return "".join(rng.choice(WORDS) + rng.choice(GLUE) for _ in range(count))


@pytest.mark.parametrize(
    "query", [["invoice"], ["budget review"], ["café", "zürich"], ["a"], ["x" * 40, "the"]]
)
def test_window_matches_the_word_by_word_walk(query: list[str]) -> None:
    terms = [Term(text, None) for text in query]
    rng = random.Random(" ".join(query))
    bodies = [_body(rng) for _ in range(1500)]
    bodies += [
        "invoice",
        "word " * 5 + "invoice",
        "word " * 6 + "invoice",
        "word " * 7 + "invoice " + "tail " * 30,
        "y" * 300 + " invoice",  # a word cut by the context's 240 characters
        "—" * 250 + "invoice",
    ]
    marker = Headlines(terms)
    for body in bodies:
        assert marker.headline(body, None) == _reference(terms, body), body


def test_a_hit_at_the_very_start_has_no_context_before_it() -> None:
    marked = Headlines([Term("invoice", None)]).headline("Invoice due, " + "pay " * 40, None)
    assert marked is not None and marked.startswith("<mark>Invoice</mark> due, pay")
    assert re.fullmatch(r"<mark>Invoice</mark> due,( pay){22} …", marked), marked


def _random_marks(rng: random.Random, start: int, end: int) -> list[tuple[int, int]]:
    cuts = sorted(rng.sample(range(start, end + 1), min(end - start + 1, rng.choice([0, 2, 4, 6]))))
    return [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]


def test_window_escaped_in_one_pass_is_escaped_piece_by_piece() -> None:
    """_render escapes the window at once: the same as each piece on its own, whitespace
    runs at the marks' edges, markup characters and the stand-ins themselves included."""
    rng = random.Random("render")
    alphabet = ["a", "é", " ", "  ", "\n", "\t", "\u00a0", "<", ">", "&", '"', "'", "x_y"]
    rendered = 0
    for round_ in range(3000):
        extra = ["\x00", "\x01"] if round_ % 10 == 0 else []
        text = "".join(rng.choice(alphabet + extra) for _ in range(rng.randint(0, 40)))
        start = rng.randint(0, len(text))
        end = rng.randint(start, len(text))
        marks = _random_marks(rng, start, end)
        expected = headline._render_pieces(text, start, end, marks)
        assert headline._render(text, start, end, marks) == expected, (text, start, end, marks)
        rendered += bool(marks)
    assert rendered > 1000  # most rounds had marks to place
    assert headline._render("a\x00b <c>", 0, 8, [(2, 3)]) == "a\x00<mark>b</mark> &lt;c&gt;"
