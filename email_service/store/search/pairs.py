"""Adjacent word pairs: what lets a phrase of common words skip most messages (PostgreSQL).

The GIN index over ``search_text`` knows which messages hold each word, not where, so a
phrase is answered by checking positions in every message holding all its words: half the
mailbox for two common words. ``email_search_pair`` (migration 0017) keeps, per message,
a key for each pair of adjacent document tokens, GIN-indexed, so a phrase first takes the
few messages holding all its pairs and checks positions in those alone.

The pairs are not written while a sync stores messages (a second GIN index on the sync's
path doubled a first sync, docs/search.md): a trigger notes every new or re-indexed message
in ``email_search_pending``, and :func:`pair_pending` (beat's ``index_search_pairs``)
pairs them later in batches. Until then a pending message is a candidate for every phrase,
so answers never depend on how far the pairing has got.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    bindparam,
    cast,
    column,
    func,
    select,
    table,
    text,
    union_all,
)
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR, insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import CompoundSelect

from email_service.store.models import Message
from email_service.store.search.index import TSVECTOR_ENTRY

# Tables of migration 0017 (PostgreSQL only; not models: nothing but this module uses them).
PAIRS = table(
    "email_search_pair",
    column("message_id"),
    column("tenant_id"),
    column("pairs", TSVECTOR),
)
PENDING = table("email_search_pending", column("message_id"), column("tenant_id"))
# Tenant tables that only migrations make (walled like the models' by migration 0017).
TABLES = frozenset({"email_search_pair", "email_search_pending"})
# Messages paired per transaction: a few seconds of work, short locks.
PAIR_BATCH = 500
# Below this many candidates a phrase checks positions in those alone (~30 us each); from
# it on, the phrase is in 2% of 100,000 messages and the date order meets 50 of its
# matches within ~2,500 rows, as it does without pairs ("example com": 3.8 ms that way,
# 1.8 s through its 21,818 candidates).
FEW_CANDIDATES = 2_000
# Pairs fall into 2**20 buckets. A bucket is one GIN key: with a key per exact pair (32-bit
# CRC) every message writes ~750 keys no other message shares, which cost 19 ms a message
# against 6 ms with 2**20 and 5 ms with 2**16 (10,000 synced messages, 500 a batch);
# 2**16 would leave a one-pair phrase ~1% of the mail to check, 2**20 0.07%.
PAIR_MASK = (1 << 20) - 1
# An odd multiplier: the first token's hash is spread before the second is mixed in.
PAIR_MIX = 0x9E3779B1

_CLAIM = text(
    "DELETE FROM email_search_pending WHERE message_id IN ("
    "SELECT message_id FROM email_search_pending LIMIT :batch FOR UPDATE SKIP LOCKED) "
    "RETURNING message_id"
)


def phrase_pairs(tokens: Sequence[str]) -> list[str]:
    """The keys every message holding these tokens adjacent and in order must have."""
    hashes = [_token_hash(token) for token in tokens]
    return [_key(a, b) for a, b in itertools.pairwise(hashes)]


def vector_pairs(vector: str) -> set[str]:
    """The keys of every adjacent pair of a stored ``tsvector`` (its text form).

    Fillers are not stored, so a pair never spans two values.
    """
    at: dict[int, int] = {}
    for match in TSVECTOR_ENTRY.finditer(vector):
        token = match.group(1)
        if "'" in token or "\\" in token:
            token = token.replace("''", "'").replace("\\\\", "\\")
        hashed = _token_hash(token)
        for position in (match.group(2) or "").split(","):
            if position:
                at[int(position.rstrip("ABCD"))] = hashed
    return {_key(hashed, at[p + 1]) for p, hashed in at.items() if p + 1 in at}


def _token_hash(token: str) -> int:
    return zlib.crc32(token.encode())


def _key(first: int, second: int) -> str:
    """A pair's bucket as a lexeme: 5 hex digits."""
    return format(((first * PAIR_MIX) ^ second) & PAIR_MASK, "05x")


def candidates(keys: Iterable[str]) -> CompoundSelect[Any]:
    """Ids of the messages that may hold all these pairs: paired ones that do, and pending."""
    query = " & ".join(f"'{key}'" for key in sorted(set(keys)))  # hex digits: nothing to quote
    holding = cast(bindparam(None, query, type_=Text), TSQUERY)
    paired = select(PAIRS.c.message_id).where(PAIRS.c.pairs.bool_op("@@")(holding))
    return union_all(paired, select(PENDING.c.message_id))


def few_candidates(session: Session | Connection, keys: Iterable[str]) -> bool:
    """Whether fewer than :data:`FEW_CANDIDATES` of the tenant's messages may hold these
    pairs (pending ones included): one index lookup, counting no further than that."""
    found = candidates(keys).limit(FEW_CANDIDATES).subquery()
    return (session.scalar(select(func.count()).select_from(found)) or 0) < FEW_CANDIDATES


def pair_pending(session: Session, batch: int = PAIR_BATCH) -> int:
    """Pair up to ``batch`` pending messages (every tenant's); returns how many were taken.

    The pending rows are deleted first, in this transaction: a message re-indexed after its
    text was read here is noted pending again once this commits, never lost.
    """
    ids = list(session.execute(_CLAIM, {"batch": batch}).scalars())
    if not ids:
        return 0
    vector = cast(Message.__table__.c.search_text, Text)  # the text form, not a document
    rows = session.execute(
        select(Message.id, Message.tenant_id, vector).where(Message.id.in_(ids))
    ).all()
    if rows:
        values = [
            {"message_id": i, "tenant_id": t, "pairs": " ".join(sorted(vector_pairs(v)))}
            for i, t, v in rows
        ]
        stmt = insert(PAIRS).values(values)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["message_id"], set_={"pairs": stmt.excluded.pairs}
            )
        )
    return len(ids)
