"""parse_message on hostile and broken input: limits, broken structure, corpora, fuzzing."""

from __future__ import annotations

import email
import email.policy
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_service.errors import NotFoundError
from email_service.mail.mime.parse import Limits, ParsedMessage, extract_part, parse_message

CPYTHON_DATA = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
CPYTHON_MESSAGES = sorted(CPYTHON_DATA.glob("msg_*.txt")) if CPYTHON_DATA.is_dir() else []

SAMPLE = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\r\n"
    b'To: a@example.org, "B, C" <b@example.org>\r\n'
    b"Subject: =?utf-8?b?w6k=?= sample\r\n"
    b"Date: Tue, 03 Mar 2026 10:15:00 +0100\r\n"
    b"Message-ID: <s@example.com>\r\n"
    b"References: <r1@x> <r2@x>\r\n"
    b'Content-Type: multipart/mixed; boundary="M"\r\n\r\n'
    b"--M\r\n"
    b'Content-Type: multipart/alternative; boundary="A"\r\n\r\n'
    b"--A\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"
    b"--A\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n<p>caf\xe9</p>\r\n--A--\r\n"
    b"--M\r\nContent-Type: application/pdf; name*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--M\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
    b"--M--\r\n"
)


def nested(depth: int) -> bytes:
    """A message nesting multiparts `depth` levels deep, a text part at the bottom."""
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (n, n) for n in range(depth)
    )
    tail = b"".join(b"\n--b%d--\n" % n for n in reversed(range(depth)))
    return head + b"Content-Type: text/plain\n\ndeep" + tail


def assert_sane(parsed: ParsedMessage) -> None:
    """What every result must be, whatever the input: storable text, consistent lists."""
    for text in (parsed.subject, parsed.text or "", parsed.html or ""):
        assert "\x00" not in text
        text.encode("utf-8")
    for address in parsed.from_ + parsed.to + parsed.cc + parsed.bcc:
        address.email.encode("utf-8")
        address.name.encode("utf-8")
    assert all(a.size >= 0 for a in parsed.attachments)
    assert len({a.index for a in parsed.attachments}) == len(parsed.attachments)
    assert parsed.date is None or parsed.date.tzinfo is not None


def test_message_over_size_limit_keeps_headers_only() -> None:
    parsed = parse_message(SAMPLE, Limits(max_message_bytes=100))
    assert parsed.subject == "é sample"
    assert parsed.message_id == "<s@example.com>"
    assert parsed.text is None and parsed.attachments == []
    assert parsed.parse_error == "message over 100 bytes: body not parsed"


def test_too_many_parts_keeps_the_first_ones() -> None:
    parts = b"".join(b"--M\nContent-Type: text/plain\n\npart %d\n" % n for n in range(50))
    raw = b'Content-Type: multipart/mixed; boundary="M"\n\n' + parts + b"--M--\n"
    parsed = parse_message(raw, Limits(max_parts=10))
    assert parsed.text == "\n".join(f"part {n}" for n in range(9))
    assert parsed.parse_error == "more than 10 parts"
    assert parse_message(raw).parse_error is None


def test_nesting_limit_stops_descent_without_recursion_error() -> None:
    assert parse_message(nested(5)).text == "deep"
    parsed = parse_message(nested(5), Limits(max_depth=3))
    assert parsed.parse_error == "nesting deeper than 3"
    assert "deep" in (parsed.text or "")  # the unparsed rest is shown as text, best effort
    hostile = parse_message(nested(100_000))
    assert (hostile.parse_error or "").startswith("nesting deeper than 20")


def test_nested_messages_count_towards_depth() -> None:
    raw = b"Subject: 0\n"
    for _ in range(30):
        raw = b"Content-Type: message/rfc822\n\n" + raw
    assert parse_message(raw).parse_error == "nesting deeper than 20"


def test_header_limit_truncates_fields_but_finds_the_body() -> None:
    raw = b"Subject: kept\n" + b"X-Junk: " + b"j" * 5000 + b"\nFrom: lost@x.org\n\nbody\n"
    parsed = parse_message(raw, Limits(max_header_bytes=1000))
    assert parsed.subject == "kept"
    assert parsed.from_ == []
    assert parsed.text == "body\n"
    assert parsed.parse_error == "header block over 1000 bytes"


def test_text_limit_cuts_text_and_html() -> None:
    raw = b"Content-Type: text/plain\n\n" + b"x" * 5000
    parsed = parse_message(raw, Limits(max_text_chars=100))
    assert parsed.text == "x" * 100
    assert parsed.parse_error == "text over 100 characters: cut"
    html = b"Content-Type: text/html\nContent-Transfer-Encoding: base64\n\n" + b"PGI+" * 3000
    parsed = parse_message(html, Limits(max_text_chars=100))
    assert parsed.html == "<b>" * 33 + "<"
    assert parsed.parse_error == "html over 100 characters: cut"


@pytest.mark.parametrize(
    ("raw", "error", "text"),
    [
        (
            b"Content-Type: multipart/mixed\n\nno boundary\n",
            "multipart/mixed without boundary",
            "no boundary\n",
        ),
        (
            b'Content-Type: multipart/mixed; boundary="X"\n\n--Y\n\nwrong\n--Y--\n',
            "multipart/mixed boundary not found",
            "--Y\n\nwrong\n--Y--\n",
        ),
        (
            b'Content-Type: multipart/mixed; boundary="X"\n\n--X\n\ntruncated',
            "multipart/mixed close delimiter missing",
            "truncated",
        ),
        (
            b'Content-Type: multipart/mixed; boundary="X"\n\n--X\n\n--X-not\n--X \t\n\nb\n--X--',
            None,
            "--X-not\nb",
        ),
    ],
)
def test_broken_multipart(raw: bytes, error: str | None, text: str) -> None:
    parsed = parse_message(raw)
    assert parsed.parse_error == error
    assert parsed.text == text


def test_same_boundary_nested_does_not_loop() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="X"\n\n--X\n'
        b'Content-Type: multipart/alternative; boundary="X"\n\n--X\n\nplain\n--X--\n'
    )
    parsed = parse_message(raw)
    assert parsed.text == "\nplain"
    assert parsed.parse_error == "multipart/alternative boundary not found"


def test_header_without_blank_line_and_mbox_from_line() -> None:
    parsed = parse_message(b"From sender Tue Mar  3 10:00:00 2026\nSubject: s\nbody line\n")
    assert parsed.subject == "s"
    assert parsed.text == "body line\n"


def test_binary_garbage_in_headers_and_body() -> None:
    raw = b"Subject: \xff\xfe\x00bad\nFrom: \x80\x81 <x@y>\nContent-Type: text/plain\n\n\x00\xff"
    parsed = parse_message(raw)
    assert_sane(parsed)
    assert parsed.subject == "ÿþbad"


HOSTILE_HEADERS = {
    "nested comments": b"To: " + b"(" * 5000 + b"a@b",
    "nested groups": b"To: " + b"g:" * 5000 + b"a@b",
    "few nested groups": b"To: " + b"g:" * 19 + b"a@b",
    "encoded-word starts": b"To: " + b"=?a?q?" * 30000,
    "blank phrase": b"To: a" + b" " * 200_000 + b"b",
    "unterminated angles": b"To: " + b"<a@b" * 50000,
    "encoded-word subject": b"Subject: " + b"=?a?q?" * 30000,
    "escaped quotes in parameters": b"Content-Type: text/plain" + b'; a="\\"' * 30000,
    "RFC 2231 sections": b"Content-Disposition: attachment"
    + b"".join(b"; filename*%d*=%%41" % n for n in range(10000)),
    "references": b"References: " + b"<a" * 100_000,
}


@pytest.mark.parametrize("raw", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
def test_hostile_header_values_parse(raw: bytes) -> None:
    """Inputs that made the standard library recurse or a pattern backtrack: linear now."""
    assert_sane(parse_message(raw + b"\n\nbody\n"))


def test_nested_groups_within_the_limit_still_parse() -> None:
    parsed = parse_message(HOSTILE_HEADERS["few nested groups"] + b"\n\nx")
    assert [a.email for a in parsed.to] == ["a@b"]


@pytest.mark.skipif(not CPYTHON_MESSAGES, reason="CPython's test/test_email/data is not installed")
@pytest.mark.parametrize("path", CPYTHON_MESSAGES, ids=lambda p: p.name)
def test_cpython_corpus_parses(path: Path) -> None:
    raw = path.read_bytes()
    parsed = parse_message(raw)
    assert_sane(parsed)
    for attachment in parsed.attachments:
        info, data = extract_part(raw, attachment.index)
        assert info == attachment
        assert len(data) == attachment.size or attachment.content_type.startswith("message/")


@pytest.mark.skipif(not CPYTHON_MESSAGES, reason="CPython's test/test_email/data is not installed")
def test_cpython_corpus_agrees_with_the_standard_library() -> None:
    """Where the standard library finds no defect, our parts and text are the same as its."""
    compared = 0
    for path in CPYTHON_MESSAGES:
        raw = path.read_bytes()
        reference = email.message_from_bytes(raw, policy=email.policy.default)
        parts = list(reference.walk())
        if any(part.defects for part in parts):
            continue
        if any(
            p.get_content_type() in ("message/delivery-status", "message/external-body")
            for p in parts
        ):
            continue  # it walks into delivery-status and external-body; we keep them whole
        parsed = parse_message(raw)
        for attachment in parsed.attachments:
            assert attachment.index < len(parts), path.name
            part = parts[attachment.index]
            assert part.get_content_type() == attachment.content_type, path.name
            if not part.is_multipart():
                assert extract_part(raw, attachment.index)[1] == part.get_payload(decode=True)
        body = reference.get_body(("plain",))
        if body is not None and body is reference and parsed.text is not None:
            assert parsed.text == body.get_content().replace("\r\n", "\n"), path.name
        compared += 1
    assert compared >= 30


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert_sane(parse_message(raw))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("-=?:;\"'<>@\\/*%\r\n\t abXY09é")), max_size=400))
def test_mime_like_text_never_raises(text: str) -> None:
    header = b'Content-Type: multipart/mixed; boundary="X"\n\n--X\n'
    assert_sane(parse_message(header + text.encode("utf-8") + b"\n--X--"))
    assert_sane(parse_message(text.encode("utf-8")))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(SAMPLE)),
            st.integers(0, 40),
            st.binary(max_size=12)
            | st.sampled_from([b"--M", b"--A--", b"\r\n\r\n", b"=?", b"?=", b";", b'"', b"*0*="]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_messages_never_raise(edits: list[tuple[int, int, bytes]]) -> None:
    raw = SAMPLE
    for position, removed, inserted in edits:
        raw = raw[:position] + inserted + raw[position + removed :]
    parsed = parse_message(raw)
    assert_sane(parsed)
    for attachment in parsed.attachments:
        assert extract_part(raw, attachment.index)[0] == attachment
    with pytest.raises(NotFoundError):
        extract_part(raw, 10_000)


@pytest.mark.skipif(not CPYTHON_MESSAGES, reason="CPython's test/test_email/data is not installed")
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_cpython_messages_never_raise(data: st.DataObject) -> None:
    raw = data.draw(st.sampled_from(CPYTHON_MESSAGES)).read_bytes()
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw)))
        removed = data.draw(st.integers(0, 200))
        inserted = data.draw(st.binary(max_size=8))
        raw = raw[:position] + inserted + raw[position + removed :]
    assert_sane(parse_message(raw))
