"""Threading: header keys, JWZ on batches, and stable incremental thread ids in any order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.mail.threadkeys import MAX_REFERENCES, SUBJECT_WINDOW
from email_service.mail.threads import (
    MemoryThreadIndex,
    ThreadAssignment,
    ThreadInput,
    ThreadNode,
    assign_thread,
    build_forest,
    clean_message_id,
    is_reply_subject,
    normalize_subject,
    parse_references,
    partition,
    thread_messages,
)

T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def msg(
    key: str,
    mid: str | None = None,
    refs: str = "",
    subject: str = "topic",
    when: datetime | None = T0,
    irt: str | None = None,
) -> ThreadInput:
    """A message whose Message-ID defaults to <key@x>; refs are bare ids separated by spaces."""
    message_id = f"<{key}@x>" if mid is None else mid
    references = " ".join(f"<{ref}@x>" for ref in refs.split())
    return ThreadInput.from_headers(
        key,
        message_id=message_id,
        references=references,
        in_reply_to=irt,
        subject=subject,
        date=when,
    )


def threads_of(messages: list[ThreadInput]) -> set[frozenset[str]]:
    return partition(thread_messages(messages))


def incremental(messages: list[ThreadInput]) -> set[frozenset[str]]:
    index = MemoryThreadIndex()
    for message in messages:
        index.ingest(message)
    return partition(index.assignments())


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ("Hello", "hello"),
        ("Re: Hello", "hello"),
        ("RE: re: Fwd: FW: Hello", "hello"),
        ("AW: SV: Antw: WG: TR: Hello", "hello"),
        ("Re[2]: Re^3: Re (4): Hello", "hello"),
        ("[dev-list] Re: [dev-list] Hello", "hello"),
        ("Hello (fwd)", "hello"),
        ("(fwd) Hello (FWD) (fwd)", "hello"),
        ("Re\uff1a Hello", "hello"),
        ("  Re:   Hello \t  World  ", "hello world"),
        ("Return of the Jedi", "return of the jedi"),
        ("Reply: not a prefix", "reply: not a prefix"),
        ("Re:", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_subject(subject: str | None, key: str) -> None:
    assert normalize_subject(subject) == key


@pytest.mark.parametrize(
    ("subject", "reply"),
    [
        ("Re: x", True),
        ("aw: x", True),
        ("[list] SV: x", True),
        ("Antw: x", True),
        ("Fwd: Re: x", False),
        ("x", False),
        ("Return", False),
    ],
)
def test_is_reply_subject(subject: str, reply: bool) -> None:
    assert is_reply_subject(subject) is reply


def test_normalize_subject_is_linear_on_hostile_input() -> None:
    assert normalize_subject("Re: " * 100_000 + "x") == ""
    assert normalize_subject("Re: " * 10 + "x") == "x"


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        ("<abc@example.com>", "<abc@example.com>"),
        ("  <abc@example.com> (comment)", "<abc@example.com>"),
        ("<abc\r\n @example.com>", "<abc@example.com>"),
        ("abc@example.com", "<abc@example.com>"),
        ("<12345>", "<12345>"),
        ("not an id", None),
        ("<>", None),
        ("", None),
        (None, None),
        ("<" + "a" * 997 + ">", None),
        ("<a\x00b@x>", None),
    ],
)
def test_clean_message_id(value: str | None, cleaned: str | None) -> None:
    assert clean_message_id(value) == cleaned


@pytest.mark.parametrize(
    ("references", "in_reply_to", "expected"),
    [
        ("<a@x> <b@x>", "<b@x>", ["<a@x>", "<b@x>"]),
        ("<a@x> <b@x>", "<c@x>", ["<a@x>", "<b@x>", "<c@x>"]),
        ("<a@x>,<b@x>\r\n\t<a@x>", None, ["<a@x>", "<b@x>"]),
        (None, "<c@x>", ["<c@x>"]),
        (None, 'Message from "Bob" <bob@x> of Tue', ["<bob@x>"]),
        ("a@x b@x garbage", None, ["<a@x>", "<b@x>"]),
        ("total garbage", "more garbage", []),
        ("", "", []),
        (None, None, []),
    ],
)
def test_parse_references(
    references: str | None, in_reply_to: str | None, expected: list[str]
) -> None:
    assert parse_references(references, in_reply_to) == expected


def test_parse_references_keeps_the_root_and_the_nearest_ancestors() -> None:
    ids = [f"<m{i}@x>" for i in range(300)]
    kept = parse_references(" ".join(ids), None)
    assert len(kept) == MAX_REFERENCES
    assert kept[0] == ids[0]
    assert kept[1:] == ids[-(MAX_REFERENCES - 1) :]


def test_thread_input_needs_an_aware_date() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ThreadInput("k", date=datetime(2024, 1, 1))


def test_own_id_in_references_is_ignored() -> None:
    message = msg("a", refs="p a")
    assert message.parent_ids == ("<p@x>",)


# --- JWZ on a batch ------------------------------------------------------------------


def test_jwz_builds_the_tree_and_sorts_siblings_by_date() -> None:
    forest = build_forest(
        [
            msg("c", refs="a", when=day(2)),
            msg("a", when=day(0)),
            msg("b", refs="a", when=day(1)),
            msg("d", refs="a b", when=day(3)),
        ]
    )
    assert forest == [
        ThreadNode("a", (ThreadNode("b", (ThreadNode("d"),)), ThreadNode("c"))),
    ]


def test_missing_parent_keeps_siblings_under_a_placeholder() -> None:
    messages = [msg("b", refs="a", when=day(1)), msg("c", refs="a", when=day(2))]
    assert build_forest(messages) == [ThreadNode(None, (ThreadNode("b"), ThreadNode("c")))]
    assert thread_messages(messages) == {"b": "b", "c": "b"}


def test_missing_grandparent_with_one_child_is_pruned() -> None:
    messages = [msg("b", refs="a", when=day(1)), msg("c", refs="a b", when=day(2))]
    assert build_forest(messages) == [ThreadNode("b", (ThreadNode("c"),))]


def test_missing_middle_message_is_pruned_and_children_promoted() -> None:
    messages = [msg("a"), msg("c", refs="a b", when=day(2)), msg("d", refs="a b", when=day(3))]
    assert build_forest(messages) == [ThreadNode("a", (ThreadNode("c"), ThreadNode("d")))]


def test_loops_in_references_do_not_hang_or_split() -> None:
    messages = [
        msg("a", refs="b"),
        msg("b", refs="a"),
        msg("c", refs="x y x c"),
        msg("d", refs="y x"),
    ]
    assert threads_of(messages) == {frozenset("ab"), frozenset("cd")}
    keys = [key for root in build_forest(messages) for key in root.message_keys()]
    assert sorted(keys) == ["a", "b", "c", "d"]


def test_duplicate_message_id_is_one_thread_across_folders() -> None:
    messages = [
        msg("inbox-copy", mid="<m@x>"),
        msg("sent-copy", mid="<m@x>"),
        msg("reply", refs="m"),
    ]
    assert threads_of(messages) == {frozenset({"inbox-copy", "sent-copy", "reply"})}
    assert incremental(messages) == threads_of(messages)


def test_conflicting_references_still_make_one_thread() -> None:
    # JWZ keeps b under a (first chain) and refuses c → b; the link still joins the trees.
    messages = [msg("x", refs="a b"), msg("y", refs="c b"), msg("c"), msg("a")]
    assert threads_of(messages) == {frozenset("xyca")}
    assert incremental(messages) == threads_of(messages)


def test_subject_fallback_links_a_headerless_reply() -> None:
    messages = [
        msg("orig", subject="Budget 2024", when=day(0)),
        msg("reply", mid="<r@x>", subject="RE: Budget 2024", when=day(2)),
    ]
    assert build_forest(messages) == [ThreadNode("orig", (ThreadNode("reply"),))]


def test_subject_fallback_needs_a_reply_subject() -> None:
    messages = [msg("a", subject="Hello", when=day(0)), msg("b", subject="Hello", when=day(1))]
    assert threads_of(messages) == {frozenset("a"), frozenset("b")}


def test_subject_fallback_only_within_the_window() -> None:
    late = SUBJECT_WINDOW + timedelta(seconds=1)
    messages = [msg("a", subject="Hello"), msg("b", subject="Re: Hello", when=T0 + late)]
    assert threads_of(messages) == {frozenset("a"), frozenset("b")}
    on_edge = [msg("a", subject="Hello"), msg("b", subject="Re: Hello", when=T0 + SUBJECT_WINDOW)]
    assert threads_of(on_edge) == {frozenset("ab")}


def test_subject_fallback_never_applies_to_a_message_with_references() -> None:
    messages = [msg("a", subject="Hello"), msg("b", refs="other", subject="Re: Hello")]
    assert threads_of(messages) == {frozenset("a"), frozenset("b")}


def test_headerless_replies_group_under_a_placeholder() -> None:
    messages = [msg("a", subject="Re: x", when=day(1)), msg("b", subject="Re: x", when=day(2))]
    assert build_forest(messages) == [ThreadNode(None, (ThreadNode("a"), ThreadNode("b")))]


def test_undated_messages_are_never_linked_by_subject() -> None:
    messages = [msg("a", subject="Hello"), msg("b", subject="Re: Hello", when=None)]
    assert threads_of(messages) == {frozenset("a"), frozenset("b")}


def test_messages_without_message_id_thread_by_their_references() -> None:
    messages = [msg("a"), msg("b", mid="", refs="a"), msg("c", mid="", subject="other")]
    assert threads_of(messages) == {frozenset("ab"), frozenset("c")}


def test_a_very_deep_thread_does_not_recurse() -> None:
    chain = [msg("m0")] + [
        msg(f"m{i}", irt=f"<m{i - 1}@x>", when=T0 + timedelta(minutes=i)) for i in range(1, 3000)
    ]
    assert len(set(thread_messages(chain).values())) == 1
    assert incremental(list(reversed(chain))) == {frozenset(m.key for m in chain)}


# --- incremental assignment --------------------------------------------------------


def test_a_reply_takes_the_existing_thread_id() -> None:
    index = MemoryThreadIndex()
    first = index.ingest(msg("a"))
    assert first.is_new
    assert index.ingest(msg("b", refs="a")) == ThreadAssignment(first.thread_id)


def test_a_parent_arriving_later_adopts_the_childs_thread() -> None:
    index = MemoryThreadIndex()
    child = index.ingest(msg("child", refs="root parent"))
    sibling = index.ingest(msg("sibling", refs="root"))
    parent = index.ingest(msg("parent", refs="root"))
    root = index.ingest(msg("root"))
    assert child.thread_id == sibling.thread_id == parent.thread_id == root.thread_id


def test_a_bridge_message_reports_the_merge() -> None:
    index = MemoryThreadIndex()
    left = index.ingest(msg("left", refs="p"))
    right = index.ingest(msg("right", refs="q"))
    assert left.thread_id != right.thread_id
    bridge = index.ingest(msg("bridge", refs="p q"))
    keep, gone = sorted([left.thread_id, right.thread_id])
    assert bridge == ThreadAssignment(keep, frozenset({gone}))
    assert {index.thread_of(key) for key in ("left", "right", "bridge")} == {keep}


def test_assign_thread_reads_the_index_only() -> None:
    index = MemoryThreadIndex()
    index.ingest(msg("a"))
    before = index.assignments()
    assignment = assign_thread(msg("b", refs="a"), index)
    assert index.assignments() == before
    assert assignment.thread_id == before["a"]


def test_new_thread_ids_come_from_the_given_factory() -> None:
    assignment = assign_thread(msg("a"), MemoryThreadIndex(), new_thread_id=lambda: "t-1")
    assert assignment == ThreadAssignment("t-1", is_new=True)


def test_an_early_headerless_reply_joins_the_later_original() -> None:
    messages = [msg("reply", subject="Re: plan", when=day(1)), msg("orig", subject="plan")]
    assert incremental(messages) == {frozenset({"reply", "orig"})}


def test_resyncing_a_message_keeps_its_thread() -> None:
    index = MemoryThreadIndex()
    first = index.ingest(msg("a"))
    again = index.ingest(msg("a"))
    assert again.thread_id == first.thread_id
    assert index.members[first.thread_id] == {"a"}


# --- stability under arrival order -----------------------------------------------


@st.composite
def forests(draw: st.DrawFn) -> tuple[list[ThreadInput], set[frozenset[str]]]:
    """Messages of a random thread forest with full References, some never delivered."""
    size = draw(st.integers(1, 14))
    parents = [draw(st.none() | st.integers(0, i - 1)) if i else None for i in range(size)]
    delivered = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    messages: list[ThreadInput] = []
    truth: dict[str, str] = {}
    for i, parent in enumerate(parents):
        chain: list[str] = []
        up = parent
        while up is not None:
            chain.insert(0, f"m{up}")
            up = parents[up]
        root = chain[0] if chain else f"m{i}"
        if delivered[i] or i == 0:
            subject = f"Re: topic {root}" if chain else f"topic {root}"
            messages.append(msg(f"m{i}", refs=" ".join(chain), subject=subject, when=day(i)))
            truth[f"m{i}"] = root
    return messages, partition(truth)


@settings(max_examples=300)
@given(forests(), st.data())
def test_any_arrival_order_gives_the_forest(
    case: tuple[list[ThreadInput], set[frozenset[str]]], data: st.DataObject
) -> None:
    messages, truth = case
    shuffled = data.draw(st.permutations(messages))
    assert threads_of(messages) == truth
    assert threads_of(shuffled) == truth
    assert incremental(shuffled) == truth


IDS = ["a", "b", "c", "d", "e", "f"]
SUBJECTS = ["x", "Re: x", "AW: x", "y", "Re: y", "Fwd: x", ""]
messy = st.lists(
    st.tuples(
        st.sampled_from([*IDS, ""]),
        st.lists(st.sampled_from(IDS), max_size=4).map(" ".join),
        st.sampled_from(SUBJECTS),
        st.none() | st.integers(0, 20).map(day),
    ),
    max_size=12,
)


@settings(max_examples=500)
@given(messy, st.data())
def test_messy_headers_give_the_same_threads_in_any_order(
    rows: list[tuple[str, str, str, datetime | None]], data: st.DataObject
) -> None:
    messages = [
        msg(f"k{i}", mid=f"<{mid}@x>" if mid else "", refs=refs, subject=subject, when=when)
        for i, (mid, refs, subject, when) in enumerate(rows)
    ]
    shuffled = data.draw(st.permutations(messages))
    batch = threads_of(messages)
    assert threads_of(shuffled) == batch
    assert incremental(shuffled) == batch
    assert incremental(messages) == batch
