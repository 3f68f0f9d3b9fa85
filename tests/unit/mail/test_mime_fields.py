"""parse_message field by field: charsets, transfer encodings, subjects, addresses, ids, dates."""

from __future__ import annotations

import datetime as dt

import pytest

from email_service.mail.mime.parse import Address, extract_part, parse_message
from tests.unit.mail.mime_samples import msg


@pytest.mark.parametrize(
    ("charset", "body", "expected"),
    [
        ("iso-8859-1", "caf\xe9 \x80".encode("latin-1"), "café €"),
        ("windows-1252", b"\x93smart\x94", "“smart”"),
        ("koi8-r", "привет".encode("koi8-r"), "привет"),
        ("shift_jis", "日本語".encode("shift_jis"), "日本語"),
        ("gb2312", "中文".encode("gb2312"), "中文"),
        ("ks_c_5601-1987", "한국어".encode("cp949"), "한국어"),
        ('"UTF8"', "ok ✓".encode(), "ok ✓"),
        ("x-unknown-charset", "naïve".encode(), "naïve"),
        ("x-unknown-charset", "na\xefve".encode("latin-1"), "naïve"),
        ("us-ascii", "8bit ✓".encode(), "8bit ✓"),
        ("utf-8", b"bad \xff byte", "bad \ufffd byte"),
        ("hex", b"not a text codec", "not a text codec"),
        ("unicode-escape", b"\\u0041", "\\u0041"),
        ("utf-7", b"+2D3-", "\ufffd"),
        ("utf-8", b"nul\x00byte", "nulbyte"),
    ],
)
def test_charsets(charset: str, body: bytes, expected: str) -> None:
    raw = f"Content-Type: text/plain; charset={charset}\n\n".encode() + body
    parsed = parse_message(raw)
    assert parsed.text == expected
    parsed.text.encode("utf-8")  # storable: no lone surrogates


@pytest.mark.parametrize(
    ("cte", "body", "expected"),
    [
        ("base64", "aGVsbG8gd29ybGQ", "hello world"),  # padding missing
        ("base64", "aGVs!!bG8=\n", "hello"),  # junk characters
        ("base64", "a", ""),
        ("quoted-printable", "soft=\nbreak =3D =XYZ", "softbreak = =XYZ"),
        ("8bit", "caf\u00e9", "café"),
        ("binary", "as is", "as is"),
        ("x-token-unknown", "as is", "as is"),
        ("x-uuencode", "begin 644 f.txt\n%:&5L;&\\`\n`\nend\n", "hello"),
        ("x-uuencode", "begin 644 f.txt\n\n%:&5L;&\\`\n\xff\n`\nend\n", "hello"),  # junk lines
        ("x-uuencode", "no begin line", "no begin line"),
    ],
)
def test_transfer_encodings(cte: str, body: str, expected: str) -> None:
    raw = f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {cte}\n\n{body}"
    assert parse_message(raw.encode()).text == expected


def test_uuencoded_attachment_extracts() -> None:
    raw = msg("""
        Content-Type: multipart/mixed; boundary="M"

        --M

        body
        --M
        Content-Type: application/octet-stream; name=f.txt
        Content-Transfer-Encoding: x-uuencode

        begin 644 f.txt
        %:&5L;&\\`
        `
        end
        --M--
    """)
    parsed = parse_message(raw)
    assert parsed.attachments[0].size == 5
    assert extract_part(raw, 2)[1] == b"hello"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "éé"),  # RFC 2047 section 6.2: space dropped
        ("=?utf-8?q?a?= b =?utf-8?q?c?=", "a b c"),
        ("=?UTF-8?B?5pel5pys?= =?UTF-8?B?6Kqe?=", "日本語"),
        ("=?utf-8?B?5pel5g==?= =?utf-8?B?nKzoqp4=?=", "日本語"),  # a character split over words
        ("=?iso-8859-1?q?caf=E9?=", "café"),
        ("=?x-bogus?q?caf=C3=A9?=", "café"),
        ("=?utf-8*en?q?lang?=", "lang"),  # RFC 2231 section 5 language suffix
        ("=?utf-8?b?!!!?=", ""),
        ("=?utf-8?q?unterminated", "=?utf-8?q?unterminated"),
        ("plain\t  folded\n   text ", "plain folded text"),
        ("Re: =?utf-8?q?=E2=9C=93?=done", "Re: ✓done"),
        ("raw utf-8 ✓", "raw utf-8 ✓"),
        ("=?utf-8?q?nul=00char?=", "nulchar"),
    ],
)
def test_subject_decoding(header: str, expected: str) -> None:
    raw = f"Subject: {header}\n\nx".encode()
    assert parse_message(raw).subject == expected


def test_subject_in_latin1_bytes_and_folded_encoded_words() -> None:
    assert parse_message(b"Subject: caf\xe9\n\nx").subject == "café"
    raw = b"Subject: =?utf-8?q?first?=\r\n =?utf-8?q?_second?=\r\n\r\nx"
    assert parse_message(raw).subject == "first second"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('"Doe, Jane" <j@x.org>, k@y.org', [("Doe, Jane", "j@x.org"), ("", "k@y.org")]),
        ("=?utf-8?q?Doe,_J=C3=BCrgen?= <j@x.org>", [("Doe, Jürgen", "j@x.org")]),
        ("Team: a@x.org, b@x.org;", [("", "a@x.org"), ("", "b@x.org")]),
        ("a@x.org (Ann Example)", [("Ann Example", "a@x.org")]),
        ("undisclosed-recipients:;", []),
        ("<<<garbage>>> @@ ,,", [("", "garbage")]),
        ("Bob <bob@x.org", [("Bob", "bob@x.org")]),
        ("", []),
        ("just-a-name", [("", "just-a-name")]),
    ],
)
def test_address_lists(header: str, expected: list[tuple[str, str]]) -> None:
    parsed = parse_message(f"To: {header}\n\nx".encode())
    assert [(a.name, a.email) for a in parsed.to] == expected


def test_every_address_field_and_repeated_fields() -> None:
    raw = msg("""
        From: a@x.org
        Sender: s@x.org
        Reply-To: r@x.org
        To: t1@x.org
        To: t2@x.org
        Bcc: b@x.org

        x
    """)
    parsed = parse_message(raw)
    assert [a.email for a in parsed.from_ + parsed.sender + parsed.reply_to] == [
        "a@x.org",
        "s@x.org",
        "r@x.org",
    ]
    assert [a.email for a in parsed.to] == ["t1@x.org", "t2@x.org"]
    assert parsed.bcc == [Address("", "b@x.org")]


@pytest.mark.parametrize(
    ("headers", "message_id", "in_reply_to", "references"),
    [
        ("Message-ID: no-brackets@x", "<no-brackets@x>", None, []),
        ("Message-ID: < spaced @ x >", "<spaced@x>", None, []),
        ("Message-ID:", None, None, []),
        (
            "In-Reply-To: <p@x> (message from Ann)\nReferences: <a@x> <b@x>,<a@x>\n <p@x>",
            None,
            "<p@x>",
            ["<a@x>", "<b@x>", "<p@x>"],
        ),
        ("References: a@x b@x", None, None, ["<a@x>", "<b@x>"]),
    ],
)
def test_message_ids(
    headers: str, message_id: str | None, in_reply_to: str | None, references: list[str]
) -> None:
    parsed = parse_message(f"{headers}\n\nx".encode())
    assert (parsed.message_id, parsed.in_reply_to, parsed.references) == (
        message_id,
        in_reply_to,
        references,
    )


def test_long_references_keep_root_and_tail() -> None:
    ids = " ".join(f"<{n}@x>" for n in range(500))
    references = parse_message(f"References: {ids}\n\nx".encode()).references
    assert len(references) == 100
    assert references[:2] == ["<0@x>", "<401@x>"]
    assert references[-1] == "<499@x>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 03 Mar 2026 10:15:00 -0500", dt.datetime(2026, 3, 3, 15, 15, tzinfo=dt.UTC)),
        ("3 Mar 2026 10:15 -0000", dt.datetime(2026, 3, 3, 10, 15, tzinfo=dt.UTC)),
        ("Tue, 03 Mar 2026 10:15:00 GMT", dt.datetime(2026, 3, 3, 10, 15, tzinfo=dt.UTC)),
        ("yesterday", None),
        ("Tue, 99 Foo 2026 99:99:99 +0000", None),
        ("", None),
    ],
)
def test_dates(value: str, expected: dt.datetime | None) -> None:
    date = parse_message(f"Date: {value}\n\nx".encode()).date
    assert date == expected
    assert date is None or date.tzinfo is not None


def test_headers_of_interest() -> None:
    raw = msg("""
        List-Id: =?utf-8?q?Caf=C3=A9?= list <cafe.lists.example.org>
        List-Unsubscribe: <mailto:u@example.org>,
         <https://example.org/u>
        Auto-Submitted: auto-replied
        X-Other: ignored

        x
    """)
    assert parse_message(raw).headers == {
        "list-id": "Café list <cafe.lists.example.org>",
        "list-unsubscribe": "<mailto:u@example.org>, <https://example.org/u>",
        "auto-submitted": "auto-replied",
    }


@pytest.mark.parametrize(
    ("disposition", "content_type", "expected"),
    [
        (
            "attachment; filename*=UTF-8''na%C3%AFve%20r%C3%A9sum%C3%A9.pdf",
            "application/pdf",
            "naïve résumé.pdf",
        ),
        (
            "attachment; filename*0*=UTF-8''%E6%97%A5%E6%9C%AC; filename*1=\"-part.txt\"",
            "text/plain",
            "日本-part.txt",
        ),
        ('attachment; filename*1="b.txt"; filename*0="a-"', "text/plain", "a-b.txt"),
        ('attachment; filename="=?UTF-8?B?w6ljb2xlLnBkZg==?="', "application/pdf", "école.pdf"),
        ("attachment; filename*=iso-8859-1'fr'caf%E9.txt", "text/plain", "café.txt"),
        ("attachment", 'image/png; name="from-type.png"', "from-type.png"),
        ('attachment; filename="a\\"quoted\\".txt"', "text/plain", 'a"quoted".txt'),
        ("attachment; filename=unquoted name.txt", "text/plain", "unquoted name.txt"),
        ('attachment; filename="unterminated.txt', "text/plain", '"unterminated.txt'),
        ('attachment; filename="tab\tand\n\tfolded"', "text/plain", "tab and folded"),
        ("attachment; filename*=utf-8''%ZZbad", "text/plain", "%ZZbad"),
    ],
)
def test_attachment_filenames(disposition: str, content_type: str, expected: str) -> None:
    raw = msg(f"""
        Content-Type: multipart/mixed; boundary="M"

        --M

        body
        --M
        Content-Type: {content_type}
        Content-Disposition: {disposition}

        data
        --M--
    """)
    assert parse_message(raw).attachments[0].filename == expected
