"""The token document and its tsvector form, without a database."""

from __future__ import annotations

from email_service.mail.query import words
from email_service.store.search.index import (
    FILLER,
    MAX_OCCURRENCES,
    MAX_POSITIONS,
    NEVER,
    from_tsvector_text,
    query_tokens,
    search_document,
    search_vector,
    to_tsvector_text,
)

ROW = {
    "subject": "Re: Café-Menü",
    "from_name": "Alice Müller",
    "from_email": "alice.mueller@example.com",
    "to_addrs": [{"name": "Bob", "email": "bob@example.org"}],
    "cc_addrs": [],
    "bcc_addrs": [{"name": "", "email": "erin@example.net"}],
    "body_text": "Hello 日本語 world",
}


def test_document_layout() -> None:
    document = search_document(ROW, ["menu.pdf", None])
    assert document.split(f" {FILLER} ") == [
        "re café menü", "alice müller", "alice mueller example com", "bob", "bob example org",
        "erin example net", "menu pdf",
        "s_re s_café s_menü", "f_alice f_müller", "f_alice f_mueller f_example f_com", "t_bob",
        "t_bob t_example t_org", "b_erin b_example b_net", "n_menu n_pdf",
        "hello 日本語 world",
    ]  # fmt: skip


def test_every_token_is_a_word_or_a_prefixed_word() -> None:
    for token in search_document(ROW, ["menu.pdf"]).split():
        word = token[2:] if token[1:2] == "_" else token
        assert token == FILLER or words(word) == [word]


def test_query_tokens_match_the_document() -> None:
    assert query_tokens("Alice.Mueller@Example.com", "from") == [
        "f_alice", "f_mueller", "f_example", "f_com",
    ]  # fmt: skip
    assert query_tokens("x" * 200, None) == [NEVER]


def test_tsvector_text_round_trip_and_weights() -> None:
    document = search_document(ROW, ["menu.pdf"])
    vector = to_tsvector_text(document)
    assert from_tsvector_text(vector) == document
    assert "'s_café':" in vector and "A" in vector.split("'s_café':")[1].split(" ")[0]
    assert "'hello':" in vector and "A" not in vector.split("'hello':")[1].split(" ")[0]


def test_limits_turn_words_into_fillers() -> None:
    many = " ".join(f"w{n}" for n in range(MAX_POSITIONS))
    body = "the " * (MAX_OCCURRENCES + 5) + "x" * 300 + " " + many
    tokens = search_document({"body_text": body}).split()
    assert tokens.count("the") == MAX_OCCURRENCES
    assert tokens[MAX_OCCURRENCES : MAX_OCCURRENCES + 6] == [FILLER] * 6
    assert len(tokens) == MAX_POSITIONS
    assert tokens[-1] == f"w{MAX_POSITIONS - MAX_OCCURRENCES - 7}"


def test_search_vector_is_the_vector_of_the_document() -> None:
    many = " ".join(f"w{n}" for n in range(MAX_POSITIONS + 10))
    crowd = [{"name": "Bob", "email": "bob@example.org"}] * 300  # fillers by the hundred
    rows = [
        ({}, []),
        (ROW, ["menu.pdf", None]),
        ({"subject": "only a subject"}, ["a.txt"]),
        ({"body_text": "the " * (MAX_OCCURRENCES + 1)}, []),  # a word too frequent
        ({"body_text": "x" * 300 + " y"}, []),  # a word too long
        ({"subject": "s", "body_text": many}, []),  # too many positions
        ({"subject": "s", "to_addrs": crowd, "body_text": "hello world"}, []),
    ]
    for row, filenames in rows:
        assert search_vector(row, filenames) == to_tsvector_text(search_document(row, filenames))
