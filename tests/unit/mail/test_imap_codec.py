"""Values in IMAP commands: quoting without injection, UID sets, folder names, flags, dates."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.errors import HeaderInjectionError, ValidationError
from email_service.mail.imap.codec import (
    MAX_SET_CHARS,
    Literal,
    astring,
    check_criteria,
    check_flags,
    check_uid_set,
    compact_uid_set,
    count_uid_set,
    decode_folder_name,
    encode_folder_name,
    flag_list,
    format_internaldate,
    mailbox_arg,
    parse_internaldate,
    parse_uid_set,
    search_string,
    uid_set_chunks,
)
from email_service.mail.imap.parse import ImapProtocolError, tokenize


@pytest.mark.parametrize(
    ("uids", "text"),
    [
        ([], ""),
        ([1], "1"),
        ([1, 2, 3, 4, 5, 7, 9, 10, 11, 12], "1:5,7,9:12"),
        ([12, 3, 3, 1, 2], "1:3,12"),
        (range(5, 9), "5:8"),
    ],
)
def test_compact_uid_set(uids: list[int], text: str) -> None:
    assert compact_uid_set(uids) == text


@pytest.mark.parametrize("bad", [[0], [-1], [2**32]])
def test_uid_range_is_checked(bad: list[int]) -> None:
    with pytest.raises(ValidationError):
        compact_uid_set(bad)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=5000), max_size=400), st.integers(1, 50))
def test_chunks_cover_every_uid_once_within_limits(uids: set[int], batch: int) -> None:
    seen: list[int] = []
    for text, count in uid_set_chunks(uids, batch):
        members = parse_uid_set(text)
        assert len(members) == count <= batch
        assert len(text) <= MAX_SET_CHARS
        seen.extend(members)
    assert seen == sorted(uids)


def test_chunks_respect_the_command_length() -> None:
    sparse = range(1_000_000, 1_100_000, 2)  # no runs: "1000000,1000002,..."
    chunks = list(uid_set_chunks(sparse, 10_000))
    assert all(len(text) <= MAX_SET_CHARS for text, _ in chunks)
    assert sum(count for _, count in chunks) == len(sparse)
    assert len(chunks) > 5


def test_parse_and_count_uid_sets() -> None:
    assert parse_uid_set("3,1:2,9:7") == [3, 1, 2, 7, 8, 9]
    assert parse_uid_set("1:100", upper=3) == [1, 2, 3]
    assert parse_uid_set("5:9", upper=3) == []
    assert count_uid_set("1:100,200,300:299") == 103
    for bad in ("", "1:", "a", "1,,2", "*"):
        with pytest.raises(ImapProtocolError):
            parse_uid_set(bad)


def test_uid_set_argument_validation() -> None:
    assert check_uid_set("1:*") == b"1:*"
    assert check_uid_set("3,5:9") == b"3,5:9"
    for bad in ("1 2", "1:*\r\nE1 LOGOUT", "", "a"):
        with pytest.raises(ValidationError):
            check_uid_set(bad)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("日本語/子", "&ZeVnLIqe-/&W1A-"),
        ("a&b", "a&-b"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("emoji 📬", "emoji &2D3c7A-"),
    ],
)
def test_folder_names_round_trip(name: str, raw: str) -> None:
    assert encode_folder_name(name) == raw
    assert decode_folder_name(raw) == name


@pytest.mark.parametrize(
    "raw", ["&AGE-", "&Jjo", "&", "&ZeVnLIqe", "a&-&-b&", "&!!-", "&2D3c-", "&3TQ-"]
)
def test_invalid_modified_utf7_stays_raw(raw: str) -> None:
    decoded = decode_folder_name(raw)
    assert decoded == raw or encode_folder_name(decoded) == raw


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0")))
def test_any_name_round_trips(name: str) -> None:
    assert decode_folder_name(encode_folder_name(name)) == name


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("&-+,AZaz09/ ÿ"), max_size=20))
def test_decoding_never_fails(raw: str) -> None:
    assert isinstance(decode_folder_name(raw), str)


def test_astring_quotes_and_escapes() -> None:
    assert astring('a "b" \\c') == b'"a \\"b\\" \\\\c"'
    assert tokenize([astring('a "b" \\c')], []) == [b'a "b" \\c']  # type: ignore[list-item]
    assert astring("café") == Literal("café".encode())
    assert mailbox_arg("inbox") == b"INBOX"
    assert mailbox_arg("Entw&APw-rfe") == b'"Entw&APw-rfe"'


@pytest.mark.parametrize("bad", ["a\r\nE1 DELETE INBOX", "a\nb", "a\rb", "nul\0"])
def test_no_command_injection(bad: str) -> None:
    for make in (astring, mailbox_arg, encode_folder_name):
        with pytest.raises(HeaderInjectionError):
            make(bad)
    with pytest.raises(HeaderInjectionError):
        check_criteria(f"SUBJECT {bad}")


def test_search_strings() -> None:
    quoted = search_string('<a"b\\c@example.test>')
    assert quoted == '"<a\\"b\\\\c@example.test>"'
    assert tokenize([quoted.encode()], []) == [b'<a"b\\c@example.test>']
    assert check_criteria(f"HEADER Message-ID {quoted}")
    for bad in ("x\r\nE1 LOGOUT", "café"):
        with pytest.raises(ValidationError):
            search_string(bad)


def test_criteria_must_be_printable_ascii() -> None:
    assert check_criteria("UID 5:* UNSEEN") == b"UID 5:* UNSEEN"
    with pytest.raises(HeaderInjectionError):
        check_criteria("SUBJECT café")


def test_flags() -> None:
    assert flag_list(["\\Seen", "$Label1", "\\Seen"]) == b"($Label1 \\Seen)"
    assert flag_list([]) == b"()"
    assert check_flags(["Junk", "\\Flagged"]) == ["Junk", "\\Flagged"]
    for bad in ("a b", "(x", "\\Recent", "x)", "", "é", "a\r\n"):
        with pytest.raises(ValidationError):
            check_flags([bad])


def test_internaldate_round_trip() -> None:
    zone = dt.timezone(dt.timedelta(hours=-7))
    value = dt.datetime(1996, 7, 7, 2, 44, 25, tzinfo=zone)
    assert format_internaldate(value) == b'"07-Jul-1996 02:44:25 -0700"'
    assert parse_internaldate(" 7-Jul-1996 02:44:25 -0700") == value
    assert parse_internaldate("07-jul-1996 02:44:25 +0530").utcoffset() == dt.timedelta(  # type: ignore[union-attr]
        hours=5, minutes=30
    )
    for bad in ("", "31-Feb-2020 00:00:00 +0000", "07-Foo-1996 02:44:25 -0700", "x"):
        assert parse_internaldate(bad) is None
    with pytest.raises(ValidationError):
        format_internaldate(dt.datetime(2020, 1, 1))  # naive: whose midnight?
