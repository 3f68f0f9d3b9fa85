"""The search corpus and the shared query table of ``test_search``.

Every expected set is written by hand from the semantics in ``mail/query_ast.py``, not
computed: the table is the specification both backends are held to.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from email_service.store.models import Account

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
ME = {"name": "", "email": "me@example.com"}
ALICE = {"name": "Alice Müller", "email": "alice.mueller@example.com"}
# (key, account, folder name, role) of every folder in the corpus.
FOLDERS = [
    ("a1", "inbox", "INBOX", "inbox"),
    ("a1", "sent", "Sent Items", "sent"),
    ("a1", "drafts", "Entwürfe", "drafts"),
    ("a1", "alpha", "Projects/Alpha", None),
    ("a1", "junk", "Junk-E-Mail", "junk"),
    ("a2", "inbox2", "INBOX", "inbox"),
    ("b1", "inbox_b", "INBOX", "inbox"),
]


def add_account(session: Any, tenant: str) -> Account:
    """A stored account of ``tenant`` that search tests file messages under (never contacted)."""
    account = Account(
        tenant_id=tenant, email=f"{uuid.uuid4().hex[:8]}@example.com", username="u",
        password_ciphertext="x", password_scheme="fernet", password_key_id="k",
        imap_host="127.0.0.1", imap_port=143, imap_security="none",
        smtp_host="127.0.0.1", smtp_port=25, smtp_security="none",
    )  # fmt: skip
    session.add(account)
    session.flush()
    return account


@dataclass
class Mail:
    """One corpus message; ``sender`` is (name, address)."""

    folder: str
    date: str
    sender: tuple[str | None, str]
    subject: str
    body: str
    to: list[dict[str, str]] = field(default_factory=lambda: [ME])
    cc: list[dict[str, str]] = field(default_factory=list)
    bcc: list[dict[str, str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=lambda: ["\\Seen"])
    size: int = 2_000
    files: list[str] = field(default_factory=list)
    message_id: str | None = None


CORPUS: dict[str, Mail] = {
    "invoice": Mail(
        "inbox", "2024-03-01T09:00", ("Alice Müller", ALICE["email"]),
        "Invoice 2024-001 for März", "Please find the invoice attached.\nTotal: 1.234,56 EUR.",
        to=[{"name": "Bob", "email": "bob@example.org"}], flags=["\\Seen", "$Work"],
        size=120_000, files=["Rechnung_März.pdf"], message_id="<inv-001@example.com>",
    ),
    "sent": Mail(
        "sent", "2024-03-02T10:00", ("Owner", "me@example.com"),
        "Re: Invoice 2024-001 for März", "Thanks Alice, paid today.",
        to=[ALICE], flags=["\\Seen", "\\Answered"],
    ),
    "acc2": Mail(
        "inbox2", "2024-03-03T08:00", ("Alice Müller", ALICE["email"]),
        "Second account invoice", "The invoice for the second account.",
        to=[{"name": "Owner Two", "email": "two@example.net"}], flags=[],
    ),
    "cafe_accent": Mail(
        "inbox", "2024-03-05T12:00", ("Chloé Dubois", "chloe@example.fr"),
        "Meeting at the café", "Let's meet at Café Zürich for a naïve résumé review.",
        to=[ALICE], flags=[],
    ),
    "cafe_plain": Mail(
        "inbox", "2024-03-06T12:00", (None, "bob@example.org"),
        "cafe menu", "The cafe menu is attached.", size=50_000, files=["menu.txt"],
    ),
    "japanese": Mail(
        "drafts", "2024-03-07T06:00", ("田中太郎", "tanaka@example.jp"),
        "会議の議題", "明日の会議について。日本語 テキスト です。",
        to=[], flags=["\\Draft", "\\Seen"], size=1_500,
    ),
    "script": Mail(
        "inbox", "2024-03-08T15:00", ("Mallory", "mallory@evil.example"), "Security test",
        "Hello <script>alert('xss')</script> world, the quick brown fox jumps.",
        flags=["\\Flagged"],
    ),
    "hyphen": Mail(
        "inbox", "2024-03-09T09:30", ("Release Bot", "bot@ci.example"), "foo-bar release",
        "The foo-bar release ships with e-mail support.",
        size=900_000, files=["release-notes.pdf", "diagram.png"],
    ),
    "phrase": Mail(
        "alpha", "2024-02-20T11:00", ("Carol", "carol@corp.example"), "Quarterly report",
        "The quarterly budget review is scheduled. Budget review notes follow.",
        cc=[{"name": "Dave Jones", "email": "dave@corp.example"}],
        bcc=[{"name": "Erin", "email": "erin@corp.example"}],
        flags=["\\Seen", "\\Answered", "$Important"], size=5_000,
    ),
    "spam": Mail(
        "junk", "2024-01-15T00:00", ("Prize Office", "win@spam.example"), "You won a prize",
        "Click here to claim your prize money.", flags=[], size=2_000_000,
    ),
    "old": Mail(
        "inbox", "2023-06-01T00:00", ("", "news@lists.example.org"), "Old newsletter",
        "Archive of the newsletter from last year.", size=800,
    ),
    "spanning": Mail(
        "inbox", "2024-02-25T00:00", ("Zed Smith", "zed@zed.example"), "alpha", "beta gamma",
        to=[{"name": "Ann Lee", "email": "ann@x.example"},
            {"name": "Ben Kim", "email": "ben@y.example"}],
        size=1_200,
    ),
    "upper": Mail(
        "inbox", "2024-02-26T00:00", ("Élodie", "elodie@example.fr"), "STRASSE ÉCOLE",
        "L'ÉCOLE est fermée.", size=1_100,
    ),
}  # fmt: skip
# Tenant B: every word, address, file name and the Message-ID that tenant A searches for.
CANARY = Mail(
    "inbox_b", "2024-03-04T00:00", ("Alice Müller", ALICE["email"]), "Invoice canaryword",
    "invoice café cafe 日本語 quick brown fox prize budget review the a foo-bar e-mail "
    "alpha beta école 1.234,56 2024 let's meet résumé naïve script",
    to=[ALICE, {"name": "Bob", "email": "bob@example.org"}], flags=["$Work", "\\Flagged"],
    size=2_000_000, files=["Rechnung_März.pdf", "release-notes.pdf"],
    message_id="<inv-001@example.com>",
)  # fmt: skip
ALL_A = frozenset(CORPUS)
UNREAD = {"acc2", "cafe_accent", "script", "spam"}
INBOXES = {"invoice", "acc2", "cafe_accent", "cafe_plain", "script", "hyphen", "old",
           "spanning", "upper"}  # fmt: skip
INVOICE = {"invoice", "sent", "acc2"}

QUERIES: list[tuple[str, set[str]]] = [
    # words: lower-cased, accents count, whole words only
    ("invoice", INVOICE),
    ("INVOICE", INVOICE),
    ("café", {"cafe_accent"}),
    ("cafe", {"cafe_plain"}),
    ("Café Zürich", {"cafe_accent"}),
    ("zurich", set()),
    ("école", {"upper"}),
    ("ÉCOLE", {"upper"}),
    ("strasse", {"upper"}),
    ("straße", set()),
    ("résumé naïve", {"cafe_accent"}),
    ("resume", set()),
    ("a", {"cafe_accent", "spam"}),
    ("the", {"invoice", "acc2", "cafe_accent", "cafe_plain", "script", "hyphen", "phrase", "old"}),
    ("2024", {"invoice", "sent"}),
    ("1.234,56", {"invoice"}),
    # non-Latin scripts: a run of letters is one word (no CJK segmentation)
    ("日本語", {"japanese"}),
    ("会議の議題", {"japanese"}),
    ("会議", set()),
    # phrases: adjacent, in order, never across two values
    ('"quick brown fox"', {"script"}),
    ('"fox brown"', set()),
    ('"budget review"', {"phrase"}),
    ('"review budget"', set()),
    ('"Let\'s meet"', {"cafe_accent"}),
    ('"alpha beta"', set()),
    ("alpha beta", {"spanning"}),
    ("foo-bar", {"hyphen"}),
    ("e-mail", {"hyphen"}),
    ("foo:bar", {"hyphen"}),
    ("alice.mueller@example.com", {"invoice", "sent", "acc2", "cafe_accent"}),
    ("script", {"script"}),
    # fields
    ("from:alice", {"invoice", "acc2"}),
    ("from:example.com", INVOICE),
    ("from:müller", {"invoice", "acc2"}),
    ("from:mueller", {"invoice", "acc2"}),
    ('from:"zed smith"', {"spanning"}),
    ('from:"smith zed"', set()),
    ("to:alice", {"sent", "cafe_accent"}),
    ("to:bob", {"invoice"}),
    ('to:"ann lee"', {"spanning"}),
    ('to:"lee ben"', set()),
    ('to:"lee ann"', set()),
    ("cc:dave", {"phrase"}),
    ("bcc:erin", {"phrase"}),
    ("cc:erin", set()),
    ("subject:invoice", INVOICE),
    ("subject:menu", {"cafe_plain"}),
    ("subject:attached", set()),
    ("subject:(invoice OR menu)", INVOICE | {"cafe_plain"}),
    ("attached", {"invoice", "cafe_plain"}),
    ("filename:pdf", {"invoice", "hyphen"}),
    ('filename:"release notes"', {"hyphen"}),
    ('filename:"pdf diagram"', set()),
    ("filename:märz", {"invoice"}),
    ("rechnung", {"invoice"}),
    # flags, attachments, folders, labels
    ("has:attachment", {"invoice", "cafe_plain", "hyphen"}),
    ("has:attachment -filename:pdf", {"cafe_plain"}),
    ("is:unread", UNREAD),
    ("is:read", ALL_A - UNREAD),
    ("is:flagged", {"script"}),
    ("is:answered", {"sent", "phrase"}),
    ("is:draft", {"japanese"}),
    ("in:inbox", INBOXES),
    ("in:INBOX", INBOXES),
    ('in:"Entwürfe"', {"japanese"}),
    ("in:ENTWÜRFE", {"japanese"}),
    ("in:drafts", {"japanese"}),
    ("in:spam", {"spam"}),
    ("in:junk-e-mail", {"spam"}),
    ("in:sent", {"sent"}),
    ('in:"Projects/Alpha"', {"phrase"}),
    ("in:nowhere", set()),
    ("label:$important", {"phrase"}),
    ("label:$WORK", {"invoice"}),
    # sizes and dates (now = 2024-03-10 12:00 UTC)
    ("larger:1M", {"spam"}),
    ("larger:100K", {"invoice", "hyphen", "spam"}),
    ("smaller:1K", {"old"}),
    ("before:2024-01-01", {"old"}),
    ("after:2024-03-07", {"japanese", "script", "hyphen"}),
    ("after:2024-02-01 before:2024-03-01", {"phrase", "spanning", "upper"}),
    ("newer_than:3d", {"script", "hyphen"}),
    ("older_than:6m", {"old"}),
    # Message-ID (tenant B has the same one)
    ("message-id:<inv-001@example.com>", {"invoice"}),
    # negation, OR, parentheses, text mixed with predicates
    ("-from:alice invoice", {"sent"}),
    ("invoice -is:read", {"acc2"}),
    ("invoice OR prize", INVOICE | {"spam"}),
    ("(invoice OR prize) -in:spam", INVOICE),
    ("prize OR is:flagged", {"spam", "script"}),
    ("(from:alice OR from:chloe) is:unread", {"acc2", "cafe_accent"}),
    ("-invoice", ALL_A - INVOICE),
    ("-(invoice OR café OR cafe)", ALL_A - INVOICE - {"cafe_accent", "cafe_plain"}),
    ("-is:read -in:inbox", {"spam"}),
    ('"budget review" -notes', set()),
    ("quarterly -prize", {"phrase"}),
    ("", set(ALL_A)),
    # nothing matches
    ("xyzzy", set()),
    ("canaryword", set()),
    ("from:canaryword OR subject:canaryword", set()),
]
