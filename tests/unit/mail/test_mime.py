"""parse_message and extract_part: every structure, exact bodies and attachment lists."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from email_service.errors import NotFoundError
from email_service.mail.mime.parse import (
    Address,
    AttachmentInfo,
    Limits,
    ParsedMessage,
    extract_part,
    parse_message,
)
from tests.unit.mail.mime_samples import PDF, PNG, b64, msg

SIMPLE = """
    From: "Doe, Jane" <jane@example.com>
    To: Bob <bob@example.org>, carol@example.net
    Cc: =?UTF-8?Q?Z=C3=BCrich_Team?= <team@example.ch>
    Subject: =?UTF-8?B?Q2Fmw6kgbWVldGluZw==?=
     tomorrow
    Date: Tue, 03 Mar 2026 10:15:00 +0100
    Message-ID: <abc.123@example.com>
    In-Reply-To: <parent@example.com>
    References: <root@example.com>
     <parent@example.com>
    MIME-Version: 1.0
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: quoted-printable

    Hello Bob,=0A=0AThe caf=C3=A9 at 10.=20
    See you.
"""


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_simple_text_message(crlf: bool) -> None:
    parsed = parse_message(msg(SIMPLE, crlf))
    assert parsed.message_id == "<abc.123@example.com>"
    assert parsed.in_reply_to == "<parent@example.com>"
    assert parsed.references == ["<root@example.com>", "<parent@example.com>"]
    assert parsed.subject == "Café meeting tomorrow"
    assert parsed.from_ == [Address("Doe, Jane", "jane@example.com")]
    assert parsed.to == [Address("Bob", "bob@example.org"), Address("", "carol@example.net")]
    assert parsed.cc == [Address("Zürich Team", "team@example.ch")]
    assert parsed.date == dt.datetime(2026, 3, 3, 9, 15, tzinfo=dt.UTC)
    assert parsed.text == "Hello Bob,\n\nThe café at 10. \nSee you.\n"
    assert parsed.html is None
    assert parsed.attachments == []
    assert parsed.has_attachments is False
    assert parsed.parse_error is None


def test_missing_content_type_is_plain_text_with_guessed_charset() -> None:
    raw = b"Subject: hi\n\nna\xc3\xafve caf\xc3\xa9\n"
    assert parse_message(raw).text == "naïve café\n"
    raw_latin1 = b"Subject: hi\n\nna\xefve caf\xe9 \x93quoted\x94\n"
    assert parse_message(raw_latin1).text == "naïve café “quoted”\n"


def test_headers_only_and_empty_input() -> None:
    assert parse_message(b"") == ParsedMessage(text="")
    headers_only = parse_message(b"Subject: only headers\r\nFrom: a@b.c\r\n")
    assert headers_only.subject == "only headers"
    assert headers_only.from_ == [Address("", "a@b.c")]
    assert headers_only.text == ""


ALTERNATIVE = """
    Subject: alt
    Content-Type: multipart/alternative; boundary="ALT"

    preamble is ignored
    --ALT
    Content-Type: text/plain; charset=iso-8859-1
    Content-Transfer-Encoding: quoted-printable

    Gr=FC=DFe
    --ALT
    Content-Type: text/html; charset=utf-8

    <p>Grüße</p>
    --ALT--
    epilogue is ignored
"""


def test_alternative_gives_text_and_html() -> None:
    parsed = parse_message(msg(ALTERNATIVE))
    assert parsed.text == "Grüße"
    assert parsed.html == "<p>Grüße</p>"
    assert parsed.attachments == []
    assert parsed.parse_error is None


RELATED = f"""
    Subject: related
    Content-Type: multipart/alternative; boundary="A"

    --A
    Content-Type: text/plain

    See the logo.
    --A
    Content-Type: multipart/related; boundary="R"; type="text/html"

    --R
    Content-Type: text/html

    <img src="cid:logo@x">
    --R
    Content-Type: image/png; name="logo.png"
    Content-ID: <logo@x>
    Content-Transfer-Encoding: base64

    {b64(PNG)}
    --R--
    --A--
"""


def test_alternative_with_related_html_and_inline_image() -> None:
    parsed = parse_message(msg(RELATED))
    assert parsed.text == "See the logo."
    assert parsed.html == '<img src="cid:logo@x">'
    assert parsed.attachments == [
        AttachmentInfo(4, "logo.png", "image/png", len(PNG), "logo@x", None, True)
    ]
    assert parsed.has_attachments is False  # a cid-referenced image is part of the body
    info, data = extract_part(msg(RELATED), 4)
    assert (info, data) == (parsed.attachments[0], PNG)


def test_outlook_related_around_alternative() -> None:
    raw = msg(f"""
        Content-Type: multipart/related; boundary="R"; type="multipart/alternative"

        --R
        Content-Type: multipart/alternative; boundary="A"

        --A
        Content-Type: text/plain; charset="us-ascii"

        Plain
        --A
        Content-Type: text/html; charset="us-ascii"

        <img src="cid:image001.png@01D0">
        --A--

        --R
        Content-Type: image/png; name="image001.png"
        Content-Disposition: inline; filename="image001.png"
        Content-ID: <image001.png@01D0>
        Content-Transfer-Encoding: base64

        {b64(PNG)}
        --R--
    """)
    parsed = parse_message(raw)
    assert (parsed.text, parsed.html) == ("Plain", '<img src="cid:image001.png@01D0">')
    assert parsed.attachments == [
        AttachmentInfo(
            4, "image001.png", "image/png", len(PNG), "image001.png@01D0", "inline", True
        )
    ]
    assert parsed.has_attachments is False


def test_apple_html_with_image_between_html_parts() -> None:
    raw = msg(f"""
        Content-Type: multipart/alternative; boundary="A"

        --A
        Content-Type: text/plain

        Top
        Bottom
        --A
        Content-Type: multipart/mixed; boundary="M"

        --M
        Content-Type: text/html

        <p>Top</p>
        --M
        Content-Type: image/png; name=photo.png
        Content-Disposition: inline; filename=photo.png
        Content-Transfer-Encoding: base64

        {b64(PNG)}
        --M
        Content-Type: text/html

        <p>Bottom</p>
        --M--
        --A--
    """)
    parsed = parse_message(raw)
    assert parsed.text == "Top\nBottom"
    assert parsed.html == "<p>Top</p>\n<p>Bottom</p>"
    assert [(a.index, a.filename, a.is_inline) for a in parsed.attachments] == [
        (4, "photo.png", True)
    ]


def test_signed_and_encrypted_messages() -> None:
    signed = msg("""
        Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary="S"

        --S
        Content-Type: text/plain

        Signed text
        --S
        Content-Type: application/pgp-signature; name="signature.asc"

        -----BEGIN PGP SIGNATURE-----
        --S--
    """)
    parsed = parse_message(signed)
    assert parsed.text == "Signed text"
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("signature.asc", "application/pgp-signature")
    ]
    encrypted = msg("""
        Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="E"

        --E
        Content-Type: application/pgp-encrypted

        Version: 1
        --E
        Content-Type: application/octet-stream; name="encrypted.asc"

        -----BEGIN PGP MESSAGE-----
        --E--
    """)
    parsed = parse_message(encrypted)
    assert (parsed.text, parsed.html) == (None, None)
    assert [a.content_type for a in parsed.attachments] == [
        "application/pgp-encrypted",
        "application/octet-stream",
    ]


def test_related_start_parameter_picks_the_root() -> None:
    raw = msg("""
        Content-Type: multipart/related; boundary="R"; start="<root@x>"

        --R
        Content-Type: image/png
        Content-ID: <img@x>

        PNGDATA
        --R
        Content-Type: text/html
        Content-ID: <root@x>

        <b>root</b>
        --R--
    """)
    parsed = parse_message(raw)
    assert parsed.html == "<b>root</b>"
    assert [a.index for a in parsed.attachments] == [1]


MIXED = f"""
    Subject: report
    Content-Type: multipart/mixed; boundary="M"

    --M
    Content-Type: multipart/alternative; boundary="A"

    --A
    Content-Type: text/plain; charset=utf-8

    Report attached.
    --A
    Content-Type: text/html; charset=utf-8

    <p>Report attached.</p>
    --A--

    --M
    Content-Type: application/pdf; name="fallback.pdf"
    Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates%202026.pdf
    Content-Transfer-Encoding: base64

    {b64(PDF)}
    --M
    Content-Type: text/calendar; method=REQUEST; charset=utf-8
    Content-Transfer-Encoding: quoted-printable

    BEGIN:VCALENDAR=0D=0AEND:VCALENDAR
    --M--
"""


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_mixed_with_attachments(crlf: bool) -> None:
    raw = msg(MIXED, crlf)
    parsed = parse_message(raw)
    assert parsed.text == "Report attached."
    assert parsed.html == "<p>Report attached.</p>"
    assert parsed.attachments == [
        AttachmentInfo(
            4, "€ rates 2026.pdf", "application/pdf", len(PDF), None, "attachment", False
        ),
        AttachmentInfo(5, None, "text/calendar", 30, None, None, False),
    ]
    assert parsed.has_attachments is True
    assert extract_part(raw, 4)[1] == PDF
    assert extract_part(raw, 5)[1] == b"BEGIN:VCALENDAR\r\nEND:VCALENDAR"


def test_apple_style_text_image_text_is_joined() -> None:
    raw = msg(f"""
        Content-Type: multipart/mixed; boundary="M"

        --M
        Content-Type: text/plain

        Before the photo.
        --M
        Content-Type: image/png; name=photo.png
        Content-Disposition: inline; filename=photo.png
        Content-Transfer-Encoding: base64

        {b64(PNG)}
        --M
        Content-Type: text/plain

        After the photo.
        --M--
    """)
    parsed = parse_message(raw)
    assert parsed.text == "Before the photo.\nAfter the photo."
    assert parsed.html is None
    assert parsed.attachments == [
        AttachmentInfo(2, "photo.png", "image/png", len(PNG), None, "inline", True)
    ]
    assert parsed.has_attachments is True  # an inline photo without cid is a real attachment


def test_mixed_html_with_plain_footer_wraps_the_footer() -> None:
    raw = msg("""
        Content-Type: multipart/mixed; boundary="M"

        --M
        Content-Type: multipart/alternative; boundary="A"

        --A
        Content-Type: text/plain

        Body
        --A
        Content-Type: text/html

        <p>Body</p>
        --A--
        --M
        Content-Type: text/plain

        List footer <unsubscribe>
        --M--
    """)
    parsed = parse_message(raw)
    assert parsed.text == "Body\nList footer <unsubscribe>"
    assert parsed.html == (
        '<p>Body</p>\n<div style="white-space:pre-wrap">List footer &lt;unsubscribe&gt;</div>'
    )


def test_mixed_html_only_and_plain_leaves_text_to_derive() -> None:
    raw = msg("""
        Content-Type: multipart/mixed; boundary="M"

        --M
        Content-Type: text/html

        <p>Main</p>
        --M
        Content-Type: text/plain

        footer
        --M--
    """)
    parsed = parse_message(raw)
    assert parsed.text is None  # the caller derives it from the whole HTML
    assert parsed.html == '<p>Main</p>\n<div style="white-space:pre-wrap">footer</div>'


def test_text_part_with_filename_or_attachment_disposition_is_an_attachment() -> None:
    raw = msg("""
        Content-Type: multipart/mixed; boundary="M"

        --M
        Content-Type: text/plain

        body
        --M
        Content-Type: text/plain; name="notes.txt"

        notes
        --M
        Content-Type: text/html
        Content-Disposition: attachment

        <p>page</p>
        --M--
    """)
    parsed = parse_message(raw)
    assert parsed.text == "body"
    assert parsed.html is None
    assert [(a.index, a.filename, a.size) for a in parsed.attachments] == [
        (2, "notes.txt", 5),
        (3, None, 11),
    ]


FORWARD = """
    Subject: Fwd: lunch
    Content-Type: multipart/mixed; boundary="M"

    --M
    Content-Type: text/plain

    See below.
    --M
    Content-Type: message/rfc822

    From: Ann <ann@example.com>
    Subject: =?utf-8?q?Lunch_=E2=9C=93?=
    Content-Type: multipart/mixed; boundary="N"

    --N
    Content-Type: text/plain

    Lunch at noon.
    --N
    Content-Type: application/octet-stream; name=menu.bin

    MENU
    --N--
    --M--
"""


def test_forwarded_message_is_one_attachment_not_the_body() -> None:
    raw = msg(FORWARD)
    parsed = parse_message(raw)
    assert parsed.text == "See below."
    info, data = extract_part(raw, 2)
    assert parsed.attachments == [
        AttachmentInfo(2, "Lunch ✓.eml", "message/rfc822", len(data), None, None, False)
    ]
    assert info == parsed.attachments[0]
    assert data.startswith(b"From: Ann <ann@example.com>\n")
    assert parse_message(data).text == "Lunch at noon."
    assert extract_part(raw, 5)[1] == b"MENU"  # parts inside a forward keep their numbers


def test_forward_as_attachment_only_uses_the_forwarded_body() -> None:
    raw = msg("""
        Subject: Fwd
        Content-Type: multipart/mixed; boundary="M"

        --M
        Content-Type: message/rfc822

        Subject: inner
        Content-Type: text/html

        <p>inner body</p>
        --M--
    """)
    parsed = parse_message(raw)
    assert parsed.html == "<p>inner body</p>"
    assert parsed.text is None
    assert [(a.index, a.filename) for a in parsed.attachments] == [(1, "inner.eml")]


def test_digest_parts_default_to_messages() -> None:
    raw = msg("""
        Content-Type: multipart/mixed; boundary="M"

        --M
        Content-Type: text/plain

        Digest intro
        --M
        Content-Type: multipart/digest; boundary="D"

        --D

        Subject: first

        one
        --D

        Subject: second

        two
        --D--
        --M--
    """)
    parsed = parse_message(raw)
    assert parsed.text == "Digest intro"
    assert [(a.index, a.content_type, a.filename) for a in parsed.attachments] == [
        (3, "message/rfc822", "first.eml"),
        (5, "message/rfc822", "second.eml"),
    ]


def test_base64_rfc822_is_decoded_before_nesting() -> None:
    inner = b"Subject: wrapped\n\nhello\n"
    raw = msg(f"""
        Content-Type: multipart/mixed; boundary="M"

        --M
        Content-Type: text/plain

        outer
        --M
        Content-Type: message/rfc822
        Content-Transfer-Encoding: base64

        {b64(inner)}
        --M--
    """)
    parsed = parse_message(raw)
    assert parsed.attachments[0].filename == "wrapped.eml"
    assert extract_part(raw, 2)[1] == inner
    assert extract_part(raw, 3)[1] == b"hello\n"


def test_attachment_sizes_match_the_decoded_bytes() -> None:
    for size in (0, 1, 2, 3, 4, 57, 58, 1000, 4097):
        data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        for crlf in (False, True):
            raw = msg(
                f"""
                Content-Type: multipart/mixed; boundary="M"

                --M

                body
                --M
                Content-Type: application/octet-stream
                Content-Transfer-Encoding: base64

                {b64(data)}

                --M--
                """,
                crlf,
            )
            assert parse_message(raw).attachments[0].size == len(data), (size, crlf)
            assert extract_part(raw, 2)[1] == data


def test_root_that_is_not_text_is_an_attachment() -> None:
    raw = msg(f"""
        Content-Type: application/pdf; name=scan.pdf
        Content-Transfer-Encoding: base64

        {b64(PDF)}
    """)
    parsed = parse_message(raw)
    assert parsed.text is None and parsed.html is None
    assert parsed.attachments == [
        AttachmentInfo(0, "scan.pdf", "application/pdf", len(PDF), None, None, False)
    ]
    assert extract_part(raw, 0)[1] == PDF


def test_extract_part_not_found() -> None:
    raw = msg(MIXED)
    for index in (-1, 99):
        with pytest.raises(NotFoundError):
            extract_part(raw, index)
    with pytest.raises(NotFoundError):
        extract_part(raw, 0)  # the multipart itself is no downloadable part
    with pytest.raises(NotFoundError):
        extract_part(raw, 4, Limits(max_message_bytes=10))


def test_indexes_follow_the_standard_library_walk_order() -> None:
    for raw in (msg(MIXED), msg(RELATED), msg(FORWARD)):
        stdlib = list(email.message_from_bytes(raw, policy=email.policy.compat32).walk())
        for attachment in parse_message(raw).attachments:
            part = stdlib[attachment.index]
            assert part.get_content_type() == attachment.content_type
            if not part.is_multipart():
                assert extract_part(raw, attachment.index)[1] == part.get_payload(decode=True)
