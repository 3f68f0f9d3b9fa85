"""List and automation header fields: in order, unfolded, decoded, and parsed."""

from __future__ import annotations

import pytest

from email_service.mail.mime.list_headers import (
    Mailto,
    client_headers,
    ordered_fields,
    parse_mailto,
)

RAW = (
    b"Received: from a\r\n\tby b; Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    b"Received: from c by d; Mon, 7 Dec 2026 09:59:00 +0000\r\n"
    b"Authentication-Results: mx.example.test; dkim=pass header.d=news.example\r\n"
    b"From: News <news@news.example>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"List-Id: Weekly news <weekly.news.example>\r\n"
    b"List-Unsubscribe: <mailto:leave@news.example?subject=unsubscribe>,\r\n"
    b"  (the web form) <https://news.example/u/abc123>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Auto-Submitted: auto-generated; type=newsletter\r\n"
    b"Precedence: Bulk\r\n"
    b"\r\n"
    b"List-Unsubscribe: <https://body.example/not-a-header>\r\n"
)


def test_every_field_in_order_unfolded_and_decoded() -> None:
    fields = ordered_fields(RAW)
    assert [name for name, _ in fields] == [
        "Received",
        "Received",
        "Authentication-Results",
        "From",
        "Subject",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Auto-Submitted",
        "Precedence",
    ]
    assert fields[0][1] == "from a\tby b; Mon, 7 Dec 2026 10:00:00 +0000"
    assert dict(fields)["Subject"] == "Grüße"


def test_list_and_automation_fields_are_parsed() -> None:
    parsed = client_headers(ordered_fields(RAW))
    assert parsed.unsubscribe_mailto == ["mailto:leave@news.example?subject=unsubscribe"]
    assert parsed.unsubscribe_http == ["https://news.example/u/abc123"]
    assert parsed.one_click
    assert parsed.list_id == "weekly.news.example"
    assert parsed.auto_submitted == "auto-generated"
    assert parsed.precedence == "bulk"
    assert parsed.authentication_results == ["mx.example.test; dkim=pass header.d=news.example"]


def test_one_click_needs_the_post_field_and_an_https_url() -> None:
    plain_http = (
        b"List-Unsubscribe: <http://x.example/u>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n"
    )
    assert not client_headers(ordered_fields(plain_http)).one_click
    no_post = b"List-Unsubscribe: <https://x.example/u>\r\n\r\n"
    parsed = client_headers(ordered_fields(no_post))
    assert not parsed.one_click and parsed.unsubscribe_http == ["https://x.example/u"]
    nothing = client_headers(ordered_fields(b"Subject: hi\r\n\r\nbody\r\n"))
    assert nothing.list_id is None and nothing.unsubscribe_http == [] and not nothing.one_click
    assert nothing.auto_submitted is None and nothing.precedence is None


def test_mailto_first_address_subject_and_body() -> None:
    found = parse_mailto(
        "mailto:leave+x@news.example,other@x.example?Subject=stop%20it&body=a%0D%0Ab"
    )
    assert found == Mailto("leave+x@news.example", "stop it", "a\nb")
    assert parse_mailto("MAILTO:l%40news.example") == Mailto(
        "l@news.example", "unsubscribe", "unsubscribe"
    )
    # a subject is one line, whatever the URI says (no header injection)
    assert parse_mailto("mailto:l@n.example?subject=a%0D%0ABcc:%20x@y").subject == "a Bcc: x@y"
    for bad in ("https://n.example/", "mailto:", "mailto:?subject=x"):
        with pytest.raises(ValueError):
            parse_mailto(bad)
