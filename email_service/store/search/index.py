"""What the full-text index stores: one token document per message, the same on every backend.

The words of a message are computed here, in Python, with :func:`query.words` — the
definition of a word in the search semantics (``query_ast``) — and stored as plain tokens
separated by single spaces in ``email_message.search_text``. PostgreSQL keeps that column
as a ``tsvector`` built from exactly these tokens and positions (no parser, no dictionary);
SQLite indexes it with FTS5's ``ascii`` tokenizer, which splits only on the spaces. Both
engines therefore see the same words at the same positions: accents count, CJK runs are
whole words, ``alice@example.com`` is ``alice example com``.

Layout of a document, every value followed by the :data:`FILLER` token so that a phrase
never spans two values (subject and body, two recipients, a name and its address):

1. unprefixed words of subject, from name, from address, each to/cc/bcc name and
   address, each attachment file name — what free text searches besides the body;
2. the same header values again with a field prefix (``s_`` subject, ``f_`` from, ``t_``
   to, ``c_`` cc, ``b_`` bcc, ``n_`` file name) for ``subject:``, ``from:`` ...;
3. the words of the body text.

A prefixed token or the filler contains ``_``, which :func:`words` never yields, so a
query word can only ever meet the tokens meant for it. PostgreSQL's ``tsvector`` limits
are applied to the document itself, so SQLite indexes the very same words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import Dialect, Text
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.types import TypeDecorator, TypeEngine

from email_service.mail.query import words

# Occupies a position between two values and matches no query word.
FILLER = "_"
# Matches nothing at all: stands for a query word the document could never hold.
NEVER = "__"
# Field prefixes of the second section; ``None`` (free text) uses the bare words.
FIELD_PREFIXES = {
    "subject": "s_",
    "from": "f_",
    "to": "t_",
    "cc": "c_",
    "bcc": "b_",
    "filename": "n_",
}
# Values with at least this many words try the bulk path (bodies); headers go word by word.
BULK_MIN_WORDS = 32
# PostgreSQL clamps tsvector positions at 16383; later words would all share it and
# phrases there would silently fail, so the document simply ends at that position.
MAX_POSITIONS = 16383
# "1" ... "16383": tsvector positions as text, made once instead of per token.
POSITION_TEXT = [str(position) for position in range(1, MAX_POSITIONS + 1)]
# PostgreSQL keeps only the first 256 positions of a lexeme; later occurrences become
# fillers here so that SQLite does not find phrases PostgreSQL cannot.
MAX_OCCURRENCES = 256
# Longer "words" are base64 or hashes, not language; PostgreSQL refuses lexemes over
# 2047 bytes. Such words are not indexed (a query for one matches nothing).
MAX_TOKEN_BYTES = 128
# A tsvector must stay under 1 MiB: 512 KiB of distinct lexemes plus their positions
# and entries (at most 16383 of each) fits with room to spare.
MAX_LEXEME_BYTES = 512 * 1024
# tsvector weight of field-prefixed tokens (the rest keep the default, D), and the
# separator that puts it after every position: "3A,9A".
HEAD_WEIGHT = "A"
HEAD_WEIGHT_SEP = HEAD_WEIGHT + ","
# One lexeme and its positions in PostgreSQL's tsvector text form: 'word':1,5,9
TSVECTOR_ENTRY = re.compile(r"'((?:[^']|'')*)'(?::([\d,A-D]+))?")
# Tables, indexes and columns of migration 0003 that the models do not declare: the FTS5
# table with its shadow tables (SQLite), PostgreSQL's generated header vector, and
# indexes Alembic cannot express per dialect.
SCHEMA_TABLE_PREFIX = "email_search"
SCHEMA_COLUMNS = frozenset({"search_head"})
SCHEMA_INDEXES = frozenset(
    {
        "idx_email_message_search",
        "idx_email_message_search_head",
        "idx_email_message_tenant_received",
        "idx_email_message_tenant_message_id",
        "idx_email_message_tenant_size",
    }
)


def search_document(row: Mapping[str, Any], filenames: Iterable[str | None] = ()) -> str:
    """The token document of a message, from its column values (``Message`` names)."""
    header = list(_header_values(row, filenames))
    tokens = _plain_tokens(header, row.get("body_text") or "")
    if tokens is not None:
        counts = Counter(tokens)
        counts.pop(FILLER, None)
        if _within_counts(counts.values(), counts):
            return " ".join(tokens)
    return _built_document(header, row.get("body_text") or "")


def search_vector(row: Mapping[str, Any], filenames: Iterable[str | None] = ()) -> StoredVector:
    """``to_tsvector_text(search_document(row, filenames))``, made from the tokens at once.

    The positions gathered for the vector also count each token for the limits, so a
    sync neither joins the document to split it again nor counts its tokens twice.
    """
    header = list(_header_values(row, filenames))
    tokens = _plain_tokens(header, row.get("body_text") or "")
    if tokens is not None:
        positions = _positions(tokens)
        if _within_counts(map(len, positions.values()), positions):
            return StoredVector(_vector_text(positions, str))  # words() have no quotes
    return StoredVector(to_tsvector_text(_built_document(header, row.get("body_text") or "")))


def _built_document(header: list[tuple[str, str]], body: str) -> str:
    """The document word by word under every limit (the rare message near one)."""
    builder = _Builder()
    for _, value in header:
        builder.add_value(value, "")
    for field, value in header:
        builder.add_value(value, FIELD_PREFIXES[field])
    builder.add_value(body, "")
    return builder.text()


def _plain_tokens(header: list[tuple[str, str]], body: str) -> list[str] | None:
    """The document's tokens in one pass, when neither the number of positions nor a
    token's size reaches a limit (nearly every message); else None. The counts per token
    are left to :func:`_within_counts`: together equal to what ``_Builder`` makes, with the
    per-word work left to C code.
    """
    values = [(words(value), "") for _, value in header]
    values += [
        (found, FIELD_PREFIXES[field])
        for (field, _), (found, _) in zip(header, values, strict=True)
    ]
    values.append((words(body), ""))
    tokens: list[str] = []
    for found, prefix in values:
        if found:
            tokens.extend([prefix + word for word in found] if prefix else found)
            tokens.append(FILLER)
    if not tokens:
        return tokens
    if len(tokens) > MAX_POSITIONS:
        return None
    if max(map(len, tokens)) * 4 > MAX_TOKEN_BYTES:  # some token may be too long
        for token in [t for t in tokens if len(t) * 4 > MAX_TOKEN_BYTES]:
            prefix_bytes = 2 if token[1:2] == "_" else 0  # prefixes are "x_"; words have no "_"
            if len(token.encode()) - prefix_bytes > MAX_TOKEN_BYTES:
                return None
    tokens.pop()  # the trailing filler
    return tokens


def _within_counts(occurrences: Iterable[int], lexemes: Iterable[str]) -> bool:
    """No token occurs too often, and the distinct tokens fit a tsvector (fillers left out)."""
    if max(occurrences, default=0) > MAX_OCCURRENCES:
        return False
    return sum(map(len, lexemes)) * 4 <= MAX_LEXEME_BYTES  # UTF-8: at most 4 bytes a character


def query_tokens(text: str, field: str | None) -> list[str]:
    """The document tokens a Term's text must match, adjacent and in order."""
    prefix = FIELD_PREFIXES[field] if field is not None else ""
    return [
        prefix + word if len(word.encode()) <= MAX_TOKEN_BYTES else NEVER for word in words(text)
    ]


def _header_values(
    row: Mapping[str, Any], filenames: Iterable[str | None]
) -> Iterator[tuple[str, str]]:
    yield "subject", row.get("subject") or ""
    yield "from", row.get("from_name") or ""
    yield "from", row.get("from_email") or ""
    for field in ("to", "cc", "bcc"):
        for address in row.get(f"{field}_addrs") or ():
            yield field, address.get("name") or ""
            yield field, address.get("email") or ""
    for name in filenames:
        yield "filename", name or ""


class _Builder:
    """Collects tokens under PostgreSQL's tsvector limits."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.counts: Counter[str] = Counter()
        self.lexeme_bytes = 0

    def add_value(self, value: str, prefix: str) -> None:
        """The words of one value, then a filler (none for an empty value)."""
        found = words(value)
        if not found:
            return
        if not prefix and len(found) >= BULK_MIN_WORDS and self._add_bulk(found):
            self.add(FILLER)
            return
        for word in found:
            self.add(prefix + word if len(word.encode()) <= MAX_TOKEN_BYTES else FILLER)
        self.add(FILLER)

    def _add_bulk(self, found: list[str]) -> bool:
        """Append many words at once when no limit can be reached (the common body case).

        Same result as adding them one by one, with the per-word work done by C code
        (Counter, max, list.extend); False, with nothing changed, when a limit is near.
        """
        if len(self.tokens) + len(found) + 1 > MAX_POSITIONS:
            return False
        # UTF-8 takes at most 4 bytes a character, so this bounds every word's size.
        if len(max(found, key=len)) * 4 > MAX_TOKEN_BYTES:
            return False
        counts = Counter(found)
        if max(counts.values()) + max(self.counts.values(), default=0) > MAX_OCCURRENCES:
            return False
        new_bytes = sum(len(word.encode()) for word in counts.keys() - self.counts.keys())
        if self.lexeme_bytes + new_bytes > MAX_LEXEME_BYTES:
            return False
        self.counts.update(counts)
        self.lexeme_bytes += new_bytes
        self.tokens.extend(found)
        return True

    def add(self, token: str) -> None:
        """One position: the token, or a filler once it exceeds a limit."""
        if len(self.tokens) >= MAX_POSITIONS:
            return
        if token != FILLER:
            seen = self.counts.get(token, 0)
            size = 0 if seen else len(token.encode())
            if seen >= MAX_OCCURRENCES or self.lexeme_bytes + size > MAX_LEXEME_BYTES:
                token = FILLER
            else:
                self.counts[token] = seen + 1
                self.lexeme_bytes += size
        self.tokens.append(token)

    def text(self) -> str:
        """The document without trailing fillers."""
        end = len(self.tokens)
        while end and self.tokens[end - 1] == FILLER:
            end -= 1
        return " ".join(self.tokens[:end])


class StoredVector(str):
    """A document already in PostgreSQL's tsvector text form, made by ``to_tsvector_text``.

    Building that form is the costly part of binding a document, so a sync makes it
    where it parses (possibly another process) and binding passes it through.
    """

    __slots__ = ()


def to_tsvector_text(document: str) -> str:
    """PostgreSQL's tsvector input for a document: each token with its positions.

    Field-prefixed tokens get weight A, so that ``ts_filter(search_text, '{a}')`` is the
    small vector of the header fields alone (``search_head``, migration 0003).
    """
    quote = _quote if "'" in document or "\\" in document else str  # words() never has them
    return _vector_text(_positions(document.split()), quote)


def _positions(tokens: list[str]) -> dict[str, list[str]]:
    """Each token's positions (as text), fillers left out; tokens past the last position
    are dropped, as PostgreSQL would clamp them."""
    positions: dict[str, list[str]] = {}
    add = positions.setdefault
    for position, token in zip(POSITION_TEXT, tokens, strict=False):
        add(token, []).append(position)
    positions.pop(FILLER, None)
    return positions


def _vector_text(positions: dict[str, list[str]], quote: Callable[[str], str]) -> str:
    return " ".join(
        [
            # field prefixes are "x_" (weight A after every position); words have no "_"
            f"'{quote(token)}':{HEAD_WEIGHT_SEP.join(at)}{HEAD_WEIGHT}"
            if token[1:2] == "_"
            else f"'{quote(token)}':{','.join(at)}"
            for token, at in positions.items()
        ]
    )


def from_tsvector_text(vector: str) -> str:
    """The document back from a tsvector's text form (fillers in the gaps)."""
    slots: dict[int, str] = {}
    for match in TSVECTOR_ENTRY.finditer(vector):
        token = match.group(1).replace("''", "'").replace("\\\\", "\\")
        for position in (match.group(2) or "").split(","):
            if position:
                slots[int(position.rstrip("ABCD"))] = token
    last = max(slots, default=0)
    return " ".join(slots.get(index, FILLER) for index in range(1, last + 1))


def _quote(token: str) -> str:
    return token.replace("\\", "\\\\").replace("'", "''")


class SearchText(TypeDecorator[str]):
    """The token document: ``tsvector`` on PostgreSQL, text indexed by FTS5 on SQLite."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``tsvector`` on PostgreSQL, TEXT elsewhere."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TSVECTOR())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """A document as the backend stores it."""
        if value is None or dialect.name != "postgresql":
            return value
        if isinstance(value, StoredVector):
            return str(value)
        return to_tsvector_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        """The document, whatever the backend stored."""
        if value is None or dialect.name != "postgresql":
            return None if value is None else str(value)
        return from_tsvector_text(str(value))


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic filter: leave out the search objects of migration 0003 the models cannot hold."""
    if not reflected or compare_to is not None or name is None:
        return True
    if type_ == "table":
        return not name.startswith(SCHEMA_TABLE_PREFIX)
    if type_ == "index":
        return name not in SCHEMA_INDEXES
    if type_ == "column":
        return name not in SCHEMA_COLUMNS
    return True
