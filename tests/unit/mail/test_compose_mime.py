"""Building outgoing MIME: structure, encodings, threading headers, and the CR/LF matrix."""

from __future__ import annotations

import base64
import email
from email import policy
from email.message import EmailMessage

import pytest

from email_service.errors import HeaderInjectionError, ValidationError
from email_service.mail.mime.build import (
    MAX_REFERENCES,
    FilePart,
    Mailbox,
    build_message,
    envelope_recipients,
    forward_subject,
    needs_smtputf8,
    new_message_id,
    reply_references,
    reply_subject,
    verify_headers,
)
from email_service.mail.mime.parse import extract_part, parse_message
from tests.unit.mail.mime_samples import BOB, WHEN, outgoing


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line[:1] not in " \t"]


def test_plain_text_message_is_one_7bit_part_with_crlf() -> None:
    data = build_message(outgoing())
    msg = parsed(data)
    assert msg.get_content_type() == "text/plain"
    assert msg["Content-Transfer-Encoding"] == "7bit"
    assert msg["Message-ID"] == "<m1@example.test>"
    assert msg["Date"].datetime == WHEN
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only (RFC 5321 §2.3.8)
    assert header_names(data) == [
        "from", "to", "subject", "date", "message-id",
        "content-type", "content-transfer-encoding", "mime-version",
    ]  # fmt: skip


def test_non_ascii_names_subject_and_body_are_encoded_and_come_back() -> None:
    out = outgoing(
        sender=Mailbox("alice@example.test", "Alïce Ünïcode"),
        to=[Mailbox("bob@example.test", 'Bob, Jr. "the" Builder')],
        subject="Grüße — 日本語 ✓",
        text="héllo wörld\n" + "x" * 1200 + "\n",
    )
    data = build_message(out)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()  # RFC 2047 encoded words, no raw 8-bit in headers
    assert data.isascii()  # quoted-printable body: no 8BITMIME needed
    back = parse_message(data)
    assert back.subject == "Grüße — 日本語 ✓"
    assert back.from_[0].name == "Alïce Ünïcode"
    assert back.to[0].name == 'Bob, Jr. "the" Builder'
    assert back.to[0].email == "bob@example.test"
    assert back.text is not None and back.text.startswith("héllo wörld")
    assert "x" * 1200 in back.text


def test_html_alternative_inline_image_and_attachments() -> None:
    logo = FilePart("logo.png", "image/png", b"\x89PNG-logo", content_id="logo@x", inline=True)
    report = FilePart("rapport été €.pdf", "application/pdf", b"%PDF-1.4 data")
    out = outgoing(html='<p>Hi <img src="cid:logo@x"></p>', attachments=[logo, report])
    msg = parsed(build_message(out))
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attachment = list(msg.iter_parts())
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = list(alternative.iter_parts())
    assert text.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html, image = list(related.iter_parts())
    assert html.get_content_type() == "text/html"
    assert image["Content-ID"] == "<logo@x>"
    assert image.get_content() == b"\x89PNG-logo"
    assert attachment.get_filename() == "rapport été €.pdf"  # RFC 2231 filename*
    assert attachment.get_content() == b"%PDF-1.4 data"
    assert "MIME-Version" not in attachment  # only the top level carries it


def test_html_only_gets_a_text_part_derived_from_it() -> None:
    msg = parsed(build_message(outgoing(text=None, html="<h1>Title</h1><p>Body text</p>")))
    plain = msg.get_body(("plain",))
    assert plain is not None
    assert "Title" in plain.get_content() and "Body text" in plain.get_content()


def test_bcc_is_envelope_only_and_recipients_are_unique() -> None:
    out = outgoing(cc=[Mailbox("carol@example.test"), BOB], bcc=[Mailbox("secret@example.test")])
    data = build_message(out)
    assert b"secret@example.test" not in data
    assert "bcc" not in header_names(data)
    assert envelope_recipients(out) == [
        "bob@example.test",
        "carol@example.test",
        "secret@example.test",
    ]


def test_idn_domains_are_sent_as_punycode() -> None:
    out = outgoing(to=[Mailbox("bob@exämple.test")])
    assert b"bob@xn--exmple-cua.test" in build_message(out)
    assert envelope_recipients(out) == ["bob@xn--exmple-cua.test"]
    assert not needs_smtputf8(out)


def test_non_ascii_local_part_needs_smtputf8() -> None:
    out = outgoing(to=[Mailbox("jörg@example.test")])
    assert needs_smtputf8(out)
    assert "jörg@example.test".encode() in build_message(out)  # RFC 6532 raw UTF-8


def test_message_id_is_under_the_senders_domain() -> None:
    first, second = new_message_id("a@mail.example.test"), new_message_id("a@mail.example.test")
    assert first != second
    assert first.startswith("<") and first.endswith("@mail.example.test>")


def test_reply_headers_and_subject() -> None:
    refs = reply_references("<p@x>", ["<root@x>", "<mid@x>"])
    assert refs == ["<root@x>", "<mid@x>", "<p@x>"]
    msg = parsed(build_message(outgoing(in_reply_to="<p@x>", references=refs)))
    assert msg["In-Reply-To"] == "<p@x>"
    assert msg["References"].split() == refs
    assert reply_subject("Re: RE: aw: Hello") == "Re: Hello"
    assert reply_subject("Hello") == "Re: Hello"
    assert forward_subject("Fwd: FW: Hello") == "Fwd: Hello"


def test_long_reference_chains_keep_the_root_and_the_newest() -> None:
    chain = [f"<r{i}@x>" for i in range(50)]
    refs = reply_references("<p@x>", chain)
    assert len(refs) == MAX_REFERENCES
    assert refs[0] == "<r0@x>" and refs[-1] == "<p@x>" and refs[-2] == "<r49@x>"
    assert reply_references("<p@x>", ["junk", "<ok@x>", "<a b@x>"]) == ["<ok@x>", "<p@x>"]


def test_forward_attaches_the_original_byte_for_byte() -> None:
    original = (
        b"From: Zo\xc3\xab <zoe@example.org>\r\nSubject: caf\xc3\xa9\r\n"
        b"Message-ID: <orig@example.org>\r\n\r\nline one\r\n.leading dot\r\nh\xc3\xa9llo\r\n"
    )
    data = build_message(outgoing(forwarded=original, forwarded_name="café.eml"))
    assert original.rstrip(b"\r\n") in data
    back = parse_message(data)
    forwarded = [a for a in back.attachments if a.content_type == "message/rfc822"]
    assert len(forwarded) == 1 and forwarded[0].filename == "café.eml"
    _info, payload = extract_part(data, forwarded[0].index)
    assert payload.rstrip(b"\r\n") == original.rstrip(b"\r\n")


def test_a_recipient_is_required() -> None:
    with pytest.raises(ValidationError):
        build_message(outgoing(to=[]))


def test_a_drafts_copy_keeps_bcc_and_needs_no_recipient() -> None:
    secret = Mailbox("secret@example.test", "Sëcret")
    data = build_message(outgoing(bcc=[secret], draft=True))
    assert header_names(data).count("bcc") == 1
    assert parsed(data)["Bcc"].addresses[0].addr_spec == "secret@example.test"
    assert parsed(data)["Bcc"].addresses[0].display_name == "Sëcret"
    assert "to" not in header_names(build_message(outgoing(to=[], draft=True)))
    # the check after building covers the Bcc field of a draft too
    swapped = data.replace(b"secret@example.test", b"evil@evil.test")
    with pytest.raises(HeaderInjectionError, match="exactly the given addresses"):
        verify_headers(swapped, outgoing(bcc=[secret], draft=True))
    with pytest.raises(HeaderInjectionError, match="unexpected fields"):
        verify_headers(data, outgoing(bcc=[secret]))  # only a draft may carry Bcc


def test_addresses_with_specials_are_refused() -> None:
    for bad in ("bob@example.test, eve@evil.test", "<bob@example.test>", "bob", "b ob@x.test"):
        with pytest.raises(ValidationError):
            build_message(outgoing(to=[Mailbox(bad)]))


# ---- CR/LF matrix -------------------------------------------------------------------

NEWLINES = {
    "raw CR": "a\rBcc: evil@evil.test",
    "bare LF": "a\nBcc: evil@evil.test",
    "CRLF": "a\r\nBcc: evil@evil.test",
    "NUL": "a\x00b",
    "RFC 2047 Q CRLF": "=?utf-8?q?a=0D=0ABcc:_evil@evil.test?=",
    "RFC 2047 B LF": "=?utf-8?b?" + base64.b64encode(b"a\nBcc: evil@evil.test").decode() + "?=",
    "RFC 2047 NUL": "=?utf-8?q?a=00b?=",
    "folded encoded words": "=?utf-8?q?a?= =?utf-8?q?=0A?=",
}
FIELDS = {
    "subject": lambda v: outgoing(subject=v),
    "to name": lambda v: outgoing(to=[Mailbox("bob@example.test", v)]),
    "cc name": lambda v: outgoing(cc=[Mailbox("c@example.test", v)]),
    "bcc name": lambda v: outgoing(bcc=[Mailbox("d@example.test", v)]),
    "from name": lambda v: outgoing(sender=Mailbox("alice@example.test", v)),
    "to address": lambda v: outgoing(to=[Mailbox(f"bob{v}@example.test")]),
    "bcc address": lambda v: outgoing(bcc=[Mailbox(f"x@example.test{v}")]),
    "attachment name": lambda v: outgoing(attachments=[FilePart(f"f{v}.pdf", "x/y", b"1")]),
    "attachment type": lambda v: outgoing(attachments=[FilePart("f.pdf", f"x/y{v}", b"1")]),
    "content id": lambda v: outgoing(
        html="<p>x</p>", attachments=[FilePart("f.png", "image/png", b"1", f"c{v}", True)]
    ),
    "in-reply-to": lambda v: outgoing(in_reply_to=f"<p{v}@x>"),
    "references": lambda v: outgoing(references=[f"<p{v}@x>"]),
}


@pytest.mark.parametrize("newline", NEWLINES.values(), ids=NEWLINES.keys())
@pytest.mark.parametrize("field", FIELDS.values(), ids=FIELDS.keys())
def test_newline_anywhere_in_a_header_input_is_refused(field: object, newline: str) -> None:
    out = field(newline)  # type: ignore[operator]
    with pytest.raises(HeaderInjectionError):
        build_message(out)


def test_the_email_packages_output_is_checked_too() -> None:
    """Whatever the email package lets through, an extra field is caught after building."""
    data = build_message(outgoing())
    injected = data.replace(b"Subject: Hello\r\n", b"Subject: Hello\r\nBcc: evil@evil.test\r\n")
    with pytest.raises(HeaderInjectionError, match="unexpected fields"):
        verify_headers(injected, outgoing())
    doubled = data.replace(b"Subject: Hello\r\n", b"Subject: Hello\r\nTo: evil@evil.test\r\n")
    with pytest.raises(HeaderInjectionError):
        verify_headers(doubled, outgoing())
    moved = data.replace(b"To: Bob <bob@example.test>", b"To: Bob <evil@evil.test>")
    with pytest.raises(HeaderInjectionError, match="exactly the given addresses"):
        verify_headers(moved, outgoing())
    cut = data.replace(b"Subject: Hello\r\n", b"Subject: Hello\r\n\r\n")
    with pytest.raises(HeaderInjectionError):
        verify_headers(cut, outgoing())
