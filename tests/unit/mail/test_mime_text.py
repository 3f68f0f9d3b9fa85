"""safe_filename and make_snippet."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from email_service.mail.mime.parse import make_snippet, safe_filename


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        ("..hidden", "hidden"),
        ("file. ", "file"),
        ("photo\u202egpj.exe", "photogpj.exe"),  # a right-to-left override hides ".exe"
        ('a<b>:c"d|e?f*g.txt', "a_b__c_d_e_f_g.txt"),
        ("tab\tnew\nline\x00.txt", "tab new line.txt"),
        ("CON", "_CON"),
        ("lpt1.txt", "_lpt1.txt"),
        ("名前 résumé.pdf", "名前 résumé.pdf"),
        ("e\u0301cole.pdf", "école.pdf"),  # NFC
        (None, "fallback.bin"),
        ("", "fallback.bin"),
        (" . ", "fallback.bin"),
        ("dir/", "fallback.bin"),
    ],
)
def test_safe_filename(name: str | None, expected: str) -> None:
    assert safe_filename(name, "fallback.bin") == expected


def test_safe_filename_falls_back_to_a_cleaned_fallback() -> None:
    assert safe_filename(None, "../x/..") == "attachment"
    assert safe_filename(None, "../a.txt") == "a.txt"


def test_safe_filename_caps_length_keeping_the_extension() -> None:
    long_ascii = safe_filename("x" * 300 + ".pdf", "f")
    assert long_ascii == "x" * 196 + ".pdf"
    long_cjk = safe_filename("日本" * 100 + ".pdf", "f")
    assert long_cjk.endswith(".pdf") and len(long_cjk.encode()) <= 200
    long_extension = safe_filename("a." + "b" * 300, "f")
    assert long_extension == "a." + "b" * 198


@given(st.text(max_size=400))
def test_safe_filename_properties(name: str) -> None:
    result = safe_filename(name, "fallback")
    assert result
    assert len(result.encode("utf-8")) <= 200
    assert not {"/", "\\", "\x00", '"'} & set(result)
    assert not result.startswith((".", " "))
    assert not any(unicodedata.category(ch).startswith("C") for ch in result)


REPLY = """Hi Ann,

Thanks, that works for me.
See you   tomorrow.

On Tue, 3 Mar 2026, Bob wrote:
> Can we meet?
> Bob

--\x20
Ann Example
Phone 123
"""


@pytest.mark.parametrize(
    ("text", "length", "expected"),
    [
        (REPLY, 200, "Hi Ann, Thanks, that works for me. See you tomorrow."),
        (REPLY, 20, "Hi Ann, Thanks,…"),
        ("> only quoted\n>> text", 200, "only quoted text"),
        ("", 200, ""),
        ("Body\n\nSent from my iPhone\nmore", 200, "Body"),
        ("Body\n________________________________\nFrom: x\nSent: y", 200, "Body"),
        ("Body\n-----Original Message-----\nFrom: x", 200, "Body"),
        ("Body\n--\nsig", 200, "Body"),
        ("Note:\nnot a quote follows", 200, "Note: not a quote follows"),
        ("word " * 100, 30, "word word word word word…"),
        ("x" * 100, 10, "xxxxxxxxx…"),
    ],
)
def test_make_snippet(text: str, length: int, expected: str) -> None:
    assert make_snippet(text, length) == expected


@given(st.text(max_size=3000), st.integers(1, 300))
def test_make_snippet_properties(text: str, length: int) -> None:
    snippet = make_snippet(text, length)
    assert len(snippet) <= length
    assert "\n" not in snippet
    assert snippet == snippet.strip()
