"""The search syntax: trees, error positions, limits, and the parse/to_text round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.errors import ValidationError
from email_service.mail.query import (
    And,
    DateCmp,
    Flag,
    Folder,
    HasAttachment,
    Label,
    MessageId,
    Node,
    Not,
    Or,
    QuerySyntaxError,
    SizeCmp,
    Term,
    parse,
    terms,
    to_text,
    words,
)
from email_service.mail.query_ast import MATCH_ALL, TEXT_FIELDS, and_, not_, or_

NOW = datetime(2024, 5, 31, 15, 30, tzinfo=UTC)


def p(query: str) -> Node:
    return parse(query, NOW)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


GOOD = [
    ("hello", Term("hello")),
    ("hello world", And((Term("hello"), Term("world")))),
    ('"hello   world"', Term("hello world")),
    ("alice@example.com", Term("alice@example.com")),
    ("-spam", Not(Term("spam"))),
    ("a OR b", Or((Term("a"), Term("b")))),
    ("a | b", Or((Term("a"), Term("b")))),
    ("a|b", Or((Term("a"), Term("b")))),
    ("a or b", And((Term("a"), Term("or"), Term("b")))),
    ("a AND b", And((Term("a"), Term("b")))),
    # OR binds tighter than the implicit AND, as in Gmail.
    ("a b OR c d", And((Term("a"), Or((Term("b"), Term("c"))), Term("d")))),
    ("(a b) OR c", Or((And((Term("a"), Term("b"))), Term("c")))),
    ("-(a OR b)", Not(Or((Term("a"), Term("b"))))),
    ('-"a b"', Not(Term("a b"))),
    ("--a", Term("a")),
    ("a a", Term("a")),
    ("((a))", Term("a")),
    ("(a b) c", And((Term("a"), Term("b"), Term("c")))),
    ("from:alice", Term("alice", "from")),
    ("FROM:Alice", Term("Alice", "from")),
    (
        "to:bob cc:carol bcc:dave",
        And((Term("bob", "to"), Term("carol", "cc"), Term("dave", "bcc"))),
    ),
    ('subject:"quarterly report"', Term("quarterly report", "subject")),
    ("filename:pdf", Term("pdf", "filename")),
    ("from:(alice OR bob)", Or((Term("alice", "from"), Term("bob", "from")))),
    ("subject:(a -b)", And((Term("a", "subject"), Not(Term("b", "subject"))))),
    ("has:attachment", HasAttachment()),
    ("HAS:Attachment", HasAttachment()),
    ("in:inbox", Folder("inbox")),
    ('in:"Projects/Ärger 2024"', Folder("Projects/Ärger 2024")),
    ("in:Работа/Отчёты", Folder("Работа/Отчёты")),
    ("label:$Important", Label("$Important")),
    ("is:unread", Flag("seen", False)),
    ("is:READ", Flag("seen", True)),
    ("is:starred", Flag("flagged", True)),
    ("is:unflagged", Flag("flagged", False)),
    ("is:answered", Flag("answered", True)),
    ("-is:unread", Flag("seen", True)),
    ("-is:draft", Flag("draft", False)),
    ("before:2024-01-31", DateCmp("<", utc(2024, 1, 31))),
    ("after:2024/1/2", DateCmp(">=", utc(2024, 1, 2))),
    ("after:2024-01-02T10:00:00+02:00", DateCmp(">=", utc(2024, 1, 2, 8))),
    ("newer_than:7d", DateCmp(">=", NOW - timedelta(days=7))),
    ("older_than:12h", DateCmp("<", NOW - timedelta(hours=12))),
    ("newer_than:2W", DateCmp(">=", NOW - timedelta(weeks=2))),
    ("newer_than:3m", DateCmp(">=", utc(2024, 2, 29, 15, 30))),
    ("older_than:1y", DateCmp("<", utc(2023, 5, 31, 15, 30))),
    ("larger:1M", SizeCmp(">", 1024 * 1024)),
    ("smaller:500K", SizeCmp("<", 500 * 1024)),
    ("larger:10000", SizeCmp(">", 10000)),
    ("larger:1.5mb", SizeCmp(">", 1572864)),
    ("larger:2G", SizeCmp(">", 2 * 1024**3)),
    ("message-id:<abc@example.com>", MessageId("<abc@example.com>")),
    ("rfc822msgid:abc@example.com", MessageId("<abc@example.com>")),
    # Unknown prefixes are free text, as in Gmail.
    ("foo:bar", Term("foo:bar")),
    ("https://example.com/x", Term("https://example.com/x")),
    ('"from:alice"', Term("from:alice")),
    ('"OR"', Term("OR")),
    # Free words without letters or digits are ignored, like the tokenizers ignore them.
    ("Tom & Jerry", And((Term("Tom"), Term("Jerry")))),
    ("a - b", And((Term("a"), Term("b")))),
    ("a OR &", Term("a")),
    ("", MATCH_ALL),
    ("   ", MATCH_ALL),
    ("&&", MATCH_ALL),
    ("-(&)", MATCH_ALL),
]


@pytest.mark.parametrize(("query", "tree"), GOOD, ids=[q or "<empty>" for q, _ in GOOD])
def test_parses_to_tree(query: str, tree: Node) -> None:
    assert p(query) == tree


BAD = [
    # (query, position, words of the message)
    ("(a b", 0, "')'"),
    ("a (b (c) d", 2, "')'"),
    ("a)", 1, "without a matching '('"),
    ("()", 0, "expected a search term"),
    ('"abc', 0, "never closed"),
    ('a "b" "c', 6, "never closed"),
    ("OR a", 0, "before OR"),
    ("a OR", 2, "after OR"),
    ("a OR OR b", 2, "after OR"),
    ("a OR)", 2, "after OR"),
    ("(a OR) b", 3, "after OR"),
    ("| a", 0, "before OR"),
    ("a |", 2, "after OR"),
    ("AND a", 0, "before AND"),
    ("a AND", 2, "after AND"),
    ("a AND OR b", 2, "after AND"),
    ("is:foo", 3, "expected is: to be one of"),
    ("x -is:later", 6, "expected is:"),
    ("has:pdf", 4, "expected has:attachment"),
    ("from:", 5, "expected a value after from:"),
    ("a subject: b", 10, "expected a value after subject:"),
    ("from:()", 5, "expected a search term"),
    ('in:""', 4, "expected a folder name"),
    ('label:" "', 7, "expected a label"),
    ("subject:!!!", 8, "letters or digits"),
    ('to:"--"', 4, "letters or digits"),
    ("from:(alice subject:x)", 12, "not an operator"),
    ("before:2024-02-30", 7, "expected a date"),
    ("after:yesterday", 6, "expected a date"),
    ("before:2024-01", 7, "expected a date"),
    ("after:2024-01/02", 6, "expected a date"),
    ("newer_than:7", 11, "expected an age"),
    ("older_than:3x", 11, "expected an age"),
    ("older_than:999999y", 11, "before year 1"),
    ("larger:1Q", 7, "expected a size"),
    ("smaller:-5", 8, "expected a size"),
    ("larger:99999999999999G", 7, "size too large"),
    ("message-id:garbage", 11, "expected a Message-ID"),
    ("a\x00b", 1, "control character"),
    ("-" * 17 + "a", 16, "nested too deeply"),
    ("(" * 17 + "a" + ")" * 17, 16, "nested too deeply"),
]


@pytest.mark.parametrize(("query", "position", "message"), BAD, ids=[b[0][:30] for b in BAD])
def test_syntax_error_points_at_position(query: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        p(query)
    assert caught.value.position == position
    assert message in caught.value.message
    assert caught.value.details == {"position": position}


def test_too_many_terms_position_is_the_first_extra_term() -> None:
    query = " ".join(f"w{i}" for i in range(65))
    with pytest.raises(QuerySyntaxError) as caught:
        p(query)
    assert query[caught.value.position :] == "w64"


def test_group_values_count_as_terms() -> None:
    query = "from:(" + " OR ".join(f"w{i}" for i in range(65)) + ")"
    with pytest.raises(QuerySyntaxError) as caught:
        p(query)
    assert query[caught.value.position :].startswith("w64")


def test_too_long_query_points_at_the_limit() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        p("a" * 1001)
    assert caught.value.position == 1000
    p("a" * 1000)


def test_syntax_error_is_a_validation_error_on_the_query_field() -> None:
    with pytest.raises(ValidationError) as caught:
        p("(a")
    assert caught.value.field == "query"
    assert caught.value.code == "query_syntax"
    assert "at position 0" in caught.value.message


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("a", datetime(2024, 1, 1))


def test_calendar_dates_are_midnight_in_the_zone_of_now() -> None:
    berlin = datetime(2024, 7, 1, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    assert parse("before:2024-07-01", berlin) == DateCmp("<", utc(2024, 6, 30, 22))
    plus5 = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    assert parse("after:2024-01-02T00:00:00", plus5) == DateCmp(">=", utc(2024, 1, 1, 19))


def test_relative_dates_depend_only_on_now() -> None:
    later = NOW + timedelta(days=1)
    assert parse("newer_than:1d", later) == DateCmp(">=", NOW)
    assert parse("newer_than:1m", utc(2024, 3, 31)) == DateCmp(">=", utc(2024, 2, 29))
    assert parse("newer_than:1y", utc(2024, 2, 29)) == DateCmp(">=", utc(2023, 2, 28))


def test_words_split_on_everything_but_letters_and_digits() -> None:
    assert words("Alice@Example.com") == ["alice", "example", "com"]
    assert words("foo_bar-baz 42") == ["foo", "bar", "baz", "42"]
    assert words("Cafe\u0301") == ["café"]
    assert words("&-!") == []


def test_terms_lists_positive_terms_once() -> None:
    tree = p('from:alice "big deal" -spam (x OR -y) big OR "big deal" is:unread')
    assert terms(tree) == [Term("alice", "from"), Term("big deal"), Term("x"), Term("big")]


def test_folder_role_aliases() -> None:
    assert Folder("INBOX").role == "inbox"
    assert Folder("Spam").role == "junk"
    assert Folder("Sent").role == "sent"
    assert Folder("Projects").role is None


def test_normalising_constructors() -> None:
    a, b, c = Term("a"), Term("b"), Term("c")
    assert and_(a, and_(b, c), a) == And((a, b, c))
    assert or_(or_(a, b), c, b) == Or((a, b, c))
    assert and_(a) == a
    assert and_() == MATCH_ALL
    assert or_(a, MATCH_ALL) == MATCH_ALL
    assert and_(a, Or(())) == Or(())
    assert not_(not_(a)) == a
    assert not_(Flag("seen", True)) == Flag("seen", False)
    assert not_(MATCH_ALL) == Or(())


def test_canonical_text() -> None:
    assert to_text(p("a b OR c -(d e)")) == "a (b OR c) -(d e)"
    assert to_text(p("from:(alice OR bob) x")) == "(from:alice OR from:bob) x"
    assert to_text(p('"-x" "a:b" "from:z" "OR" "x y"')) == '"-x" a:b "from:z" "OR" "x y"'
    assert to_text(p("newer_than:1d larger:1M")) == "after:2024-05-30T15:30:00Z larger:1048576"
    assert to_text(p("-is:draft in:Inbox")) == "-is:draft in:Inbox"
    assert to_text(MATCH_ALL) == ""


def test_to_text_refuses_what_no_query_can_say() -> None:
    with pytest.raises(ValueError, match="no query text"):
        to_text(Or(()))
    with pytest.raises(ValueError, match="double quote"):
        to_text(Term('say "hi"'))


# Pieces a person might type, glued with and without spaces, to reach odd corners.
PIECES = [
    "a",
    "Foo",
    "x-y",
    "é",
    "42",
    "OR",
    "AND",
    "or",
    "|",
    "-",
    "(",
    ")",
    '"',
    '"a b"',
    "from:",
    "from:bob",
    "subject:",
    "in:",
    "in:Inbox",
    "is:unread",
    "is:",
    "has:attachment",
    "larger:1M",
    "newer_than:7d",
    "before:2024-01-02",
    "foo:bar",
    ":",
    "&",
    "label:x",
    "message-id:<a@b>",
]
queries = st.lists(
    st.tuples(st.sampled_from(PIECES), st.sampled_from(["", " ", "  "])), max_size=12
)


@settings(max_examples=500)
@given(queries.map(lambda parts: "".join(piece + gap for piece, gap in parts)))
def test_round_trip_of_typed_queries(query: str) -> None:
    try:
        tree = p(query)
    except QuerySyntaxError as error:
        assert 0 <= error.position <= len(query)
        return
    text = to_text(tree)
    assert p(text) == tree
    assert to_text(p(text)) == text


@settings(max_examples=300)
@given(st.text(max_size=120))
def test_any_text_parses_or_fails_with_a_position(query: str) -> None:
    try:
        tree = p(query)
    except QuerySyntaxError as error:
        assert 0 <= error.position <= len(query)
    else:
        assert p(to_text(tree)) == tree


TEXTS = ["a", "Bar", "x-y", "alice@example.com", "OR", "-x", "from:z", "a:b", "é 1", "big deal"]
NAMES = ["Inbox", "sent", "Ärchiv/2024", "My Folder", "OR", "a(b", "$Label"]
leaves = st.one_of(
    st.builds(Term, st.sampled_from(TEXTS), st.sampled_from([None, *sorted(TEXT_FIELDS)])),
    st.builds(Flag, st.sampled_from(["seen", "flagged", "answered", "draft"]), st.booleans()),
    st.just(HasAttachment()),
    st.builds(Folder, st.sampled_from(NAMES)),
    st.builds(Label, st.sampled_from(NAMES)),
    st.builds(DateCmp, st.sampled_from(["<", ">="]), st.datetimes(timezones=st.just(UTC))),
    st.builds(SizeCmp, st.sampled_from(["<", ">"]), st.integers(0, 2**53)),
    st.just(MessageId("<a.b@example.com>")),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda nodes: and_(*nodes)),
        st.lists(inner, min_size=1, max_size=3).map(lambda nodes: or_(*nodes)),
        inner.map(not_),
    ),
    max_leaves=8,
)


@settings(max_examples=500)
@given(trees)
def test_round_trip_of_normalised_trees(tree: Node) -> None:
    assert p(to_text(tree)) == tree
