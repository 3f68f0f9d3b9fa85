"""Bounces read from real-looking samples: RFC 3464 reports, Postfix, qmail and Exim."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from email_service.mail.mime.dsn import (
    MAX_RECIPIENTS,
    Bounce,
    RecipientStatus,
    parse_bounce,
    xtext_decode,
    xtext_encode,
)
from tests.hardening import corpus
from tests.unit.mail import bounce_samples as samples


def _parsed(raw: bytes) -> Bounce:
    bounce = parse_bounce(raw)
    assert bounce is not None
    return bounce


def test_postfix_report_with_the_whole_original() -> None:
    bounce = _parsed(samples.POSTFIX_FULL)
    assert bounce.kind == "dsn" and bounce.envelope_id is None
    assert bounce.original_message_id == ("<179662334302.15276.11529989624090163638@example.test>")
    assert bounce.recipients == (
        RecipientStatus(
            recipient="nobody@example.test",
            original_recipient="nobody@example.test",
            action="failed",
            status="5.1.1",
            diagnostic="550 5.1.1 <nobody@example.test> User doesn't exist: nobody@example.test",
        ),
    )


def test_postfix_report_with_envelope_id_and_returned_headers_crlf() -> None:
    bounce = _parsed(samples.POSTFIX_HDRS)
    assert bounce.envelope_id == "0b1e5a0c-3c55-4f0e-9d38-2f0f8f5b7a11"
    assert bounce.original_message_id == "<hdrs.1@example.test>"
    (gone,) = bounce.recipients
    assert (gone.recipient, gone.original_recipient) == ("gone@example.test", "Gone@Example.test")
    assert gone.diagnostic == "550 5.1.1 <gone@example.test> User doesn't exist"


def test_rfc3464_report_about_several_recipients() -> None:
    bounce = _parsed(samples.RFC3464_MULTIPLE)
    assert bounce.envelope_id == "0GK500B4HD0888@cc.cmu.edu"
    assert bounce.original_message_id == "<rfc3464.a3@cs.utk.edu>"
    assert [(r.recipient, r.action, r.status) for r in bounce.recipients] == [
        ("arathib@vnet.ibm.com", "failed", "5.0.0"),
        ("johnh@hpnjld.njd.hp.com", "delayed", "4.0.0"),
        ("wsnell@sdcc13.ucsd.edu", "failed", "5.0.0"),
    ]
    first, delayed, _last = bounce.recipients
    assert first.diagnostic == "550 'arathib@vnet.IBM.COM' is not a registered gateway user"
    assert delayed.diagnostic is None


def test_qmail_text_bounce() -> None:
    bounce = _parsed(samples.QMAIL)
    assert bounce.kind == "text" and bounce.envelope_id is None
    assert bounce.original_message_id == "<qmail.original@example.test>"
    assert [(r.recipient, r.action, r.status) for r in bounce.recipients] == [
        ("nobody@example.org", "failed", "5.1.1"),
        ("old@example.org", "failed", "5.1.1"),
    ]
    assert "User unknown" in (bounce.recipients[0].diagnostic or "")


def test_exim_text_bounce() -> None:
    bounce = _parsed(samples.EXIM)
    assert bounce.original_message_id == "<exim.original@example.test>"
    (nobody,) = bounce.recipients
    assert (nobody.recipient, nobody.action, nobody.status) == (
        "nobody@example.net",
        "failed",
        "5.0.0",
    )
    assert nobody.diagnostic is not None and "550 Unrouteable address" in nobody.diagnostic


def test_a_delay_warning_reports_delayed() -> None:
    raw = samples.EXIM.replace(
        b"Subject: Mail delivery failed: returning message to sender",
        b"Subject: Warning: message 1abc-0001 delayed 24 hours",
    ).replace(b"550 Unrouteable address", b"451 try again later")
    (late,) = _parsed(raw).recipients
    assert (late.action, late.status) == ("delayed", "4.0.0")


@pytest.mark.parametrize(
    "raw",
    [
        samples.PERSON,
        samples.READ_RECEIPT,
        b"",
        b"Subject: x\r\n\r\nbody\r\n",
        b"From: postmaster@example.test\r\nSubject: new policy\r\n\r\n<a@b.c>: 550\r\n",
    ],
    ids=["person", "read-receipt", "empty", "plain", "postmaster-news"],
)
def test_ordinary_mail_is_not_a_bounce(raw: bytes) -> None:
    assert parse_bounce(raw) is None


def test_a_report_without_recipients_falls_back_to_the_text() -> None:
    raw = samples.POSTFIX_FULL.replace(b"Action: failed", b"Action: exploded")
    bounce = _parsed(raw)
    assert bounce.kind == "text"
    assert [(r.recipient, r.status) for r in bounce.recipients] == [
        ("nobody@example.test", "5.1.1")
    ]
    assert bounce.original_message_id is not None


def test_xtext_round_trip() -> None:
    assert xtext_encode("a+b=c d@ü") == "a+2Bb+3Dc+20d@+C3+BC"
    assert xtext_decode("a+2Bb+3Dc+20d@+C3+BC") == "a+b=c d@ü"
    assert xtext_encode("0b1e5a0c-3c55-4f0e") == "0b1e5a0c-3c55-4f0e"


BOUNCE_HEAD = (
    b"From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
)


def _many_blocks(count: int) -> bytes:
    block = b"\r\nFinal-Recipient: rfc822; r%d@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    report = b"".join(block % n for n in range(count))
    return (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n"
        + report
        + b"--b--\r\n"
    )


def _text_recipients(count: int) -> bytes:
    return b"\r\n" + b"".join(b"<r%d@example.org>: 550 no\r\n\r\n" % n for n in range(count))


# Hostile input dressed as a bounce -> the recipients read from it (None: not a bounce).
HOSTILE: dict[str, tuple[Callable[[], bytes], int | None]] = {
    **{name: (build, None) for name, (_marker, build) in corpus.BOMBS.items()},
    "10,000 recipient blocks": (lambda: _many_blocks(10_000), MAX_RECIPIENTS),
    "100,000 text recipients": (lambda: _text_recipients(100_000), MAX_RECIPIENTS),
}


@pytest.mark.parametrize(("build", "count"), HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_bounces_are_read_within_limits(
    build: Callable[[], bytes], count: int | None
) -> None:
    bounce = parse_bounce(BOUNCE_HEAD + build())
    assert (bounce and len(bounce.recipients)) == count


def test_a_subject_made_to_backtrack_is_not_a_bounce() -> None:
    raw = b"Return-Path: <>\r\nSubject: " + b"warning: message " * 4000 + b"\r\n\r\nx\r\n"
    assert parse_bounce(raw) is None


def test_a_cut_or_garbled_report_never_raises() -> None:
    raw = samples.POSTFIX_FULL
    for end in range(0, len(raw), 37):
        parse_bounce(raw[:end])
        parse_bounce(raw[:end] + b"\xff\x00=?utf-8?b?*?=" + raw[end:])
