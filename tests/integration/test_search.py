"""Full-text search on PostgreSQL and SQLite: one table of queries, the same answers on both.

The corpus (``search_corpus``) is stored row by row through SQLAlchemy, as the sync would
store it, with the token document from ``search_document``. Every query of the shared
table runs on both backends against hand-written expectations, so passing on both proves
them identical and right. Tenant B holds canaries that share the words of
tenant A's messages (and one Message-ID): none may ever come back for tenant A.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text, update

from email_service.errors import ValidationError
from email_service.mail.query import parse
from email_service.services.search import pair_stored_messages
from email_service.store.models import Attachment, Folder, Message, SyncState, utcnow
from email_service.store.search import backend as search
from email_service.store.search import pairs, statements
from email_service.store.search.backend import (
    SEARCH_RANDOM_PAGE_COST,
    refresh_search_text,
    search_messages,
)
from email_service.store.search.index import search_document
from email_service.store.search.pairs import pair_pending
from email_service.store.states import SyncRunState
from tests.conftest import TENANT_A, TENANT_B
from tests.integration.search_corpus import (
    CANARY,
    CORPUS,
    FOLDERS,
    NOW,
    QUERIES,
    Mail,
    add_account,
)


@pytest.fixture
def corpus(runtime: Any) -> dict[str, Any]:
    """The corpus stored for tenants A and B; returns ids by key and the account ids."""
    with runtime.db.session() as session:
        accounts = {
            key: add_account(session, tenant)
            for key, tenant in (("a1", TENANT_A), ("a2", TENANT_A), ("b1", TENANT_B))
        }
        folders: dict[str, Folder] = {}
        for account_key, key, name, role in FOLDERS:
            account = accounts[account_key]
            folders[key] = Folder(tenant_id=account.tenant_id, account_id=account.id,
                                  raw_name=name, name=name, role=role)  # fmt: skip
            session.add(folders[key])
        session.flush()
        ids = {key: _store(session, folders[mail.folder], n, mail)
               for n, (key, mail) in enumerate(CORPUS.items())}  # fmt: skip
        _store(session, folders["inbox_b"], 99, CANARY)
    return {"ids": ids, "accounts": {key: a.id for key, a in accounts.items()}}


def _store(session: Any, folder: Folder, uid: int, mail: Mail) -> uuid.UUID:
    row: dict[str, Any] = {
        "subject": mail.subject, "from_name": mail.sender[0], "from_email": mail.sender[1],
        "to_addrs": mail.to, "cc_addrs": mail.cc, "bcc_addrs": mail.bcc, "body_text": mail.body,
    }  # fmt: skip
    lowered = {flag.lower() for flag in mail.flags}
    message = Message(
        tenant_id=folder.tenant_id, account_id=folder.account_id, folder_id=folder.id,
        uid=uid + 1, uidvalidity=1, message_id=mail.message_id,
        received_date=datetime.fromisoformat(mail.date).replace(tzinfo=UTC),
        size=mail.size, flags=mail.flags, seen="\\seen" in lowered,
        flagged="\\flagged" in lowered, answered="\\answered" in lowered,
        draft="\\draft" in lowered, has_attachments=bool(mail.files), blob_sha256="0" * 64,
        search_text=search_document(row, mail.files), **row,
    )  # fmt: skip
    session.add(message)
    session.flush()
    for index, name in enumerate(mail.files, start=2):
        session.add(Attachment(tenant_id=folder.tenant_id, message_id=message.id,
                               part_index=index, filename=name,
                               content_type="application/octet-stream", size=100))  # fmt: skip
    return message.id


def _search(runtime: Any, query: str, tenant: str = TENANT_A, **options: Any) -> Any:
    with runtime.db.session() as session:
        return search_messages(session, tenant, parse(query, NOW), limit=100, **options)


def _keys(corpus: dict[str, Any], page: Any) -> list[str]:
    by_id = {value: key for key, value in corpus["ids"].items()}
    return [by_id.get(hit.message.id, "?foreign") for hit in page.items]


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[q or "<empty>" for q, _ in QUERIES])
def test_query_table(runtime: Any, corpus: dict[str, Any], query: str, expected: set[str]) -> None:
    by_date = _keys(corpus, _search(runtime, query, order="date"))
    newest_first = sorted(expected, key=lambda key: CORPUS[key].date, reverse=True)
    assert by_date == newest_first
    by_rank = _keys(corpus, _search(runtime, query, order="relevance"))
    assert sorted(by_rank) == sorted(expected)


def test_query_table_is_large_and_has_every_operator() -> None:
    text = " ".join(query for query, _ in QUERIES)
    assert len(QUERIES) >= 40
    for operator in (
        "from:",
        "to:",
        "cc:",
        "bcc:",
        "subject:",
        "filename:",
        "in:",
        "is:",
        "has:",
        "label:",
        "larger:",
        "smaller:",
        "before:",
        "after:",
        "newer_than:",
        "older_than:",
        "message-id:",
        " OR ",
        "(",
        '"',
        "-",
    ):
        assert operator in text, operator  # fmt: skip


def test_tenant_b_sees_only_its_canary(runtime: Any, corpus: dict[str, Any]) -> None:
    page = _search(runtime, "canaryword invoice café 日本語", tenant=TENANT_B)
    assert [hit.message.subject for hit in page.items] == ["Invoice canaryword"]
    for query in ("canaryword", "", "filename:pdf", "in:inbox", "message-id:<inv-001@example.com>"):
        assert "?foreign" not in _keys(corpus, _search(runtime, query)), query


def test_account_scope(runtime: Any, corpus: dict[str, Any]) -> None:
    second = corpus["accounts"]["a2"]
    assert _keys(corpus, _search(runtime, "invoice", account_id=second)) == ["acc2"]
    assert _keys(corpus, _search(runtime, "in:inbox", account_id=second)) == ["acc2"]
    assert _keys(corpus, _search(runtime, "in:sent", account_id=second)) == []


@pytest.mark.parametrize("order", ["date", "relevance"])
@pytest.mark.parametrize("query", ["", "the", "is:read OR invoice"])
def test_pages_walk_every_result_once(
    runtime: Any, corpus: dict[str, Any], order: str, query: str
) -> None:
    whole = _keys(corpus, _search(runtime, query, order=order))
    walked: list[str] = []
    cursor = None
    with runtime.db.session() as session:
        while True:
            page = search_messages(
                session, TENANT_A, parse(query, NOW), limit=3, cursor=cursor, order=order
            )  # type: ignore[arg-type]
            walked += _keys(corpus, page)
            assert len(page.items) <= 3
            cursor = page.next_cursor
            if cursor is None:
                break
    assert walked == whole
    assert len(set(walked)) == len(walked) > 3


@pytest.mark.parametrize("limit", [2, 3, 5])
def test_relevance_ranks_the_newest_matches_then_goes_by_date(
    runtime: Any, corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    query = "the OR attached OR invoice"
    newest_first = _keys(corpus, _search(runtime, query, order="date"))
    walked: list[str] = []
    cursor = None
    with runtime.db.session() as session:
        while True:
            page = search_messages(session, TENANT_A, parse(query, NOW), limit=limit,
                                   cursor=cursor, order="relevance")  # fmt: skip
            walked += _keys(corpus, page)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert len(newest_first) > 6
    assert sorted(walked[:3]) == sorted(newest_first[:3])  # the window, in rank order
    assert walked[3:] == newest_first[3:]  # then the older matches, newest first


def test_bad_cursor_and_limit(runtime: Any, corpus: dict[str, Any]) -> None:
    with runtime.db.session() as session:
        page = search_messages(session, TENANT_A, parse("", NOW), limit=2, order="date")
        assert page.next_cursor is not None
        for cursor, order in (("not-a-cursor", "date"), (page.next_cursor, "relevance")):
            with pytest.raises(ValidationError):
                search_messages(session, TENANT_A, parse("", NOW), limit=2, cursor=cursor,
                                order=order)  # type: ignore[arg-type]  # fmt: skip
        with pytest.raises(ValidationError):
            search_messages(session, TENANT_A, parse("", NOW), limit=0)


def test_headlines_mark_hits_and_escape_the_rest(runtime: Any, corpus: dict[str, Any]) -> None:
    (fox,) = _search(runtime, "fox").items
    assert fox.headline == (
        "… xss&#x27;)&lt;/script&gt; world, the quick brown <mark>fox</mark> jumps"
    )
    (phrase,) = _search(runtime, '"budget review"').items
    assert phrase.headline == (
        "The quarterly <mark>budget review</mark> is scheduled. <mark>Budget review</mark> "
        "notes follow"
    )
    (japanese,) = _search(runtime, "日本語").items
    assert japanese.headline == "明日の会議について。<mark>日本語</mark> テキスト です"
    (subject,) = _search(runtime, "subject:menu").items
    assert subject.headline == "cafe <mark>menu</mark>"
    for hit in _search(runtime, "script OR hello OR alert").items:
        assert hit.headline is not None
        assert "<script" not in hit.headline
        assert "<mark>" in hit.headline
    assert all(hit.headline is None for hit in _search(runtime, "from:alice").items)


def test_relevance_puts_the_better_match_first(runtime: Any, corpus: dict[str, Any]) -> None:
    ranked = _search(runtime, "invoice OR budget OR review", order="relevance").items
    assert ranked[0].rank >= ranked[-1].rank > 0
    assert _keys(corpus, _search(runtime, "review budget quarterly", order="relevance")) == [
        "phrase"
    ]


def test_index_limits_are_the_same_on_both_backends(runtime: Any, corpus: dict[str, Any]) -> None:
    long_word = "x" * 200
    body = "the " * 300 + "target " + long_word + " " + " ".join(f"w{i}" for i in range(17_000))
    with runtime.db.session() as session:
        folder = session.get_one(Folder, _folder_of(session, corpus["ids"]["old"]))
        _store(session, folder, 500, Mail("inbox", "2024-03-10T00:00", ("L", "l@l.example"),
                                          "limits", body + " finalword"))  # fmt: skip
    assert _subjects(runtime, "target") == ["limits"]
    assert _subjects(runtime, '"the target"') == []  # 257th "the": past PostgreSQL's 256
    assert _subjects(runtime, long_word) == []  # longer than a word can be
    assert _subjects(runtime, "w100") == ["limits"]
    assert _subjects(runtime, "finalword") == []  # beyond position 16383


def test_refresh_rebuilds_the_document(runtime: Any, corpus: dict[str, Any]) -> None:
    message_id = corpus["ids"]["cafe_plain"]
    with runtime.db.session() as session:
        session.execute(update(Message).where(Message.id == message_id).values(search_text=""))
    assert _subjects(runtime, "filename:menu") == []
    with runtime.db.session() as session:
        assert refresh_search_text(session, TENANT_A, [message_id]) == 1
        assert refresh_search_text(session, TENANT_B, [message_id]) == 0
    assert _subjects(runtime, "filename:menu") == ["cafe menu"]
    assert _subjects(runtime, '"cafe menu"') == ["cafe menu"]


def test_deleted_messages_leave_the_index(runtime: Any, corpus: dict[str, Any]) -> None:
    with runtime.db.session() as session:
        session.delete(session.get_one(Message, corpus["ids"]["spam"]))
    assert _subjects(runtime, "prize") == []
    assert len(_search(runtime, "").items) == len(CORPUS) - 1


def _folder_of(session: Any, message_id: uuid.UUID) -> uuid.UUID:
    folder_id: uuid.UUID = session.get_one(Message, message_id).folder_id
    return folder_id


def _subjects(runtime: Any, query: str) -> list[str]:
    return [hit.message.subject for hit in _search(runtime, query, order="date").items]


def test_search_statements_are_planned_for_their_words(
    runtime: Any, corpus: dict[str, Any]
) -> None:
    """PostgreSQL plans each search for its actual tsquery, in that transaction only.

    A generic plan of the (prepared) statement cannot know how common a word is; for a
    common word it ranked every match instead of reading the newest rows by date. The
    plans price random reads as for a cached mailbox (the server's default assumes a
    spinning disk), and neither setting outlives the search's transaction.
    """
    if runtime.db.dialect != "postgresql":
        pytest.skip("plan caching is PostgreSQL's")
    with runtime.db.session() as session:
        default_cost = session.scalar(text("SHOW random_page_cost"))
    assert default_cost != str(SEARCH_RANDOM_PAGE_COST)  # else the check below shows nothing
    with runtime.db.session() as session:
        for _ in range(7):  # past psycopg's prepare threshold and PostgreSQL's five custom plans
            search_messages(session, TENANT_A, parse("quarterly", NOW), limit=5)
        assert session.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
        assert session.scalar(text("SHOW random_page_cost")) == str(SEARCH_RANDOM_PAGE_COST)
    with runtime.db.session() as session:
        assert session.scalar(text("SHOW plan_cache_mode")) == "auto"
        assert session.scalar(text("SHOW random_page_cost")) == default_cost
    with runtime.db.session() as session:  # an operator's lower setting is kept
        session.execute(text("SET LOCAL random_page_cost = 1.05"))
        search_messages(session, TENANT_A, parse("quarterly", NOW), limit=5)
        assert session.scalar(text("SHOW random_page_cost")) == "1.05"


def test_phrases_answer_the_same_once_paired(runtime: Any, corpus: dict[str, Any]) -> None:
    """Stored messages wait in ``email_search_pending``; paired, every query answers the same."""
    if runtime.db.dialect != "postgresql":
        pytest.skip("the pair index is PostgreSQL's (FTS5 keeps positions)")
    with runtime.db.operator_session("test: pair every message") as session:
        assert pair_pending(session, batch=5) == 5
        while pair_pending(session, batch=5):
            pass
        assert session.scalar(text("SELECT count(*) FROM email_search_pending")) == 0
        assert session.scalar(text("SELECT count(*) FROM email_search_pair")) == len(CORPUS) + 1
    for query, expected in QUERIES:
        by_date = _keys(corpus, _search(runtime, query, order="date"))
        assert by_date == sorted(expected, key=lambda key: CORPUS[key].date, reverse=True), query


def test_a_phrase_reads_only_messages_with_its_pairs(runtime: Any, corpus: dict[str, Any]) -> None:
    """The pairs decide which messages a phrase checks; a re-indexed message is pending again."""
    if runtime.db.dialect != "postgresql":
        pytest.skip("the pair index is PostgreSQL's (FTS5 keeps positions)")
    message_id = corpus["ids"]["cafe_plain"]
    with runtime.db.session() as session:  # a sync runs (live lock): the pairing waits
        session.add(SyncState(account_id=corpus["accounts"]["a1"], tenant_id=TENANT_A,
                              state=SyncRunState.RUNNING,
                              lock_expires_at=utcnow() + timedelta(minutes=5)))  # fmt: skip
    assert pair_stored_messages(runtime.db) == 0
    with runtime.db.session() as session:
        session.execute(update(SyncState).values(state=SyncRunState.OK))
    assert pair_stored_messages(runtime.db) == len(CORPUS) + 1
    assert pair_stored_messages(runtime.db) == 0
    with runtime.db.operator_session("test: forget the pairs of one message") as session:
        session.execute(
            text("UPDATE email_search_pair SET pairs = '' WHERE message_id = :id"),
            {"id": message_id},
        )
    assert _subjects(runtime, '"cafe menu"') == []  # its pairs say it cannot hold the phrase
    assert _subjects(runtime, "cafe menu") == ["cafe menu"]  # words need no pairs
    with pytest.MonkeyPatch.context() as patch:  # as many candidates as a common phrase:
        patch.setattr(pairs, "FEW_CANDIDATES", 0)  # positions are checked in date order
        assert _subjects(runtime, '"cafe menu"') == ["cafe menu"]
    with runtime.db.session() as session:
        assert refresh_search_text(session, TENANT_A, [message_id]) == 1  # unchanged text
    assert _subjects(runtime, '"cafe menu"') == []  # ... leaves its pairs as they were
    with runtime.db.session() as session:
        session.execute(update(Message).where(Message.id == message_id).values(search_text=""))
        assert refresh_search_text(session, TENANT_A, [message_id]) == 1  # rebuilt: pending
    assert _subjects(runtime, '"cafe menu"') == ["cafe menu"]
    with runtime.db.operator_session("test: pair it again") as session:
        assert pair_pending(session) == 1
    assert _subjects(runtime, '"cafe menu"') == ["cafe menu"]
    assert _subjects(runtime, '"menu cafe"') == []


def test_prepared_statements_answer_as_sqlalchemy_does(
    runtime: Any, corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a search's SELECTs run as prepared statements kept per shape
    (``statements.py``). Every query of the table gives the same pages as when SQLAlchemy
    executes the same statements, on a Session and on the search pool: rows, ranks and
    headlines, in both orders."""
    if runtime.db.dialect != "postgresql":
        pytest.skip("SQLite's statements always go through SQLAlchemy")

    def pages(opened: Any) -> list[Any]:
        with opened as conn:
            return [
                [(tuple(hit.message), hit.rank, hit.headline) for hit in page.items]
                for query, _ in QUERIES
                for order in ("date", "relevance")
                for page in [
                    search_messages(conn, TENANT_A, parse(query, NOW), limit=100, order=order)
                ]
            ]

    statements._shapes.clear()
    pooled, in_session = pages(runtime.db.searching()), pages(runtime.db.session())
    assert statements._shapes  # kept compiled: these ran as prepared statements
    through_sqlalchemy: list[Any] = []

    def executed(conn: Any, statement: Any) -> list[Any]:
        through_sqlalchemy.append(statement)
        return list(conn.execute(statement).all())

    monkeypatch.setattr(statements, "rows", executed)
    assert pooled == in_session == pages(runtime.db.session())
    assert len(through_sqlalchemy) >= 2 * len(QUERIES)
    assert any(page for page in pooled)
