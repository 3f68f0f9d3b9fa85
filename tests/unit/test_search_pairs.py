"""Pair keys: a phrase's keys are among its document's, and only adjacent tokens make one."""

from __future__ import annotations

from email_service.store.search.index import search_document, to_tsvector_text
from email_service.store.search.pairs import phrase_pairs, vector_pairs


def _pairs(subject: str, body: str) -> set[str]:
    document = search_document({"subject": subject, "body_text": body})
    return vector_pairs(to_tsvector_text(document))


def test_every_adjacent_pair_of_the_document_is_keyed() -> None:
    keys = _pairs("Budget review", "the budget review is due; review budget later")
    for phrase in (["budget", "review"], ["review", "budget"], ["s_budget", "s_review"]):
        assert set(phrase_pairs(phrase)) <= keys
    assert set(phrase_pairs(["the", "budget", "review", "is", "due"])) <= keys


def test_words_of_two_values_make_no_pair() -> None:
    keys = _pairs("alpha", "beta gamma")  # subject then body: a filler between them
    assert set(phrase_pairs(["beta", "gamma"])) <= keys
    assert not set(phrase_pairs(["alpha", "beta"])) & keys
    assert not set(phrase_pairs(["gamma", "beta"])) & keys


def test_a_key_is_five_hex_digits_and_one_word_has_none() -> None:
    assert phrase_pairs(["budget"]) == []
    (key,) = phrase_pairs(["budget", "review"])
    assert len(key) == 5 and int(key, 16) >= 0
    assert phrase_pairs(["budget", "review"]) != phrase_pairs(["review", "budget"])


def test_quoted_tokens_are_read_back() -> None:
    vector = "'it''s':1 'a\\\\b':2 'c':3"
    assert vector_pairs(vector) == set(phrase_pairs(["it's", "a\\b", "c"]))
