"""A check that every committed change to a tracked table has its change-log row.

Listeners on every engine watch the SQL each transaction sends: writes to the tables of
the objects the change log announces (messages, folders, drafts, outbox items, accounts,
sync states) and the ``INSERT INTO change_log`` that ``store/change_log.py`` adds at
commit. When the transaction commits, every write made by the application must be
covered by a row of the same transaction:

- an INSERT or DELETE of a row, or an UPDATE that sets a column a client can see
  (every column not in :data:`HIDDEN`), needs a change-log row of the object's type;
- each row it changed needs a row of its own: the ids come from the statement when it
  names them (an INSERT, an ORM flush, ``WHERE <table>.id = ...`` or ``IN (...)``), else
  from ``SELECT <key> FROM <table> WHERE <its WHERE>`` run just before it, in its
  transaction (an INSERT ... ON CONFLICT, which may skip rows, needs one of the type);
- a statement that matched no row (rowcount 0) changed nothing and needs nothing.

A savepoint rolled back takes its writes with it; a transaction rolled back is forgotten.
Writes made by test code (a fixture seeding rows, the teardown emptying tables, a step
monkeypatched in to stand for a concurrent writer) and by migrations are not the
application's changes. A write is the application's when the nearest frame in
``email_service`` (past the session plumbing) or ``tests`` is in ``email_service``, or when
it flushes an ORM object the application changed or added (remembered on the object, as a
test may commit a session it handed to a service function).

It works on the SQL text SQLAlchemy compiles (``INSERT INTO t (...) VALUES``,
``UPDATE t SET c=...``, ``DELETE FROM t``) for both backends' parameter styles, and costs
a regular expression per statement, a stack walk per tracked write, and that SELECT for
an UPDATE/DELETE that does not name its rows.
"""

from __future__ import annotations

import re
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event, inspect
from sqlalchemy.orm import Session

from email_service.store.models import Base

# table -> (change type, primary key column)
TRACKED: dict[str, tuple[str, str]] = {
    "email_message": ("message", "id"),
    "mail_folder": ("folder", "id"),
    "draft": ("draft", "id"),
    "outbox": ("outbox", "id"),
    "email_account": ("account", "id"),
    "account_sync": ("sync", "account_id"),
    # a message's attachments are part of the message a client reads
    "attachment": ("message", "message_id"),
}
# Columns no API answer shows (directly or through a derived field): an UPDATE that sets
# only these is bookkeeping and is not announced. docs/staying-current.md lists them.
HIDDEN: dict[str, frozenset[str]] = {
    # IMAP identity and threading/search internals; the row's id, folder and flags are
    # what a client sees (uid re-keying after a UIDVALIDITY change keeps the id).
    "email_message": frozenset(
        {"uid", "uidvalidity", "modseq", "subject_key", "subject_orphan", "search_text"}
        | {"updated_at", "created_at"}
    ),
    # sync checkpoints; synced_at and the counts are shown
    "mail_folder": frozenset({"uidvalidity", "uidnext", "highestmodseq", "raw_name"}),
    # where the Drafts copy is on the server, and that one was started
    "draft": frozenset({"imap_uidvalidity", "imap_uid", "imap_saved_at", "imap_copy_started"}),
    # the delivery lease, the SMTP stage, reconcile counters, the Sent copy's UID
    "outbox": frozenset(
        {"lease_owner", "lease_expires_at", "stage", "reconcile_checks", "sent_copy_uid"}
    ),
    # credentials and the OAuth2 refresh lease (status, auth_error and updated_at are shown)
    "email_account": frozenset(
        {
            "password_ciphertext",
            "password_scheme",
            "password_key_id",
            "oauth_ciphertext",
            "oauth_key_id",
            "oauth_refresh_until",
        }
    ),
    # the run's lock
    "account_sync": frozenset({"lock_owner", "lock_expires_at"}),
    "attachment": frozenset(),
}
# Functions whose writes are announced by nothing, and why (module path, function name).
UNANNOUNCED = {
    # a purged tenant's change log goes with the rest of its rows: no reader is left
    ("email_service/services/lifecycle/deletion.py", "_purge"),
}

_INSERT = re.compile(r'^\s*INSERT INTO "?(\w+)"? \(([^)]*)\) VALUES (.*)$', re.S | re.I)
_UPDATE = re.compile(r'^\s*UPDATE "?(\w+)"? SET (.*?)(?: WHERE (.*?))?(?: RETURNING .*)?$', re.S)
_DELETE = re.compile(r'^\s*DELETE FROM "?(\w+)"?(?: WHERE (.*?))?(?: RETURNING .*)?$', re.S)
_UPDATE_FROM = re.compile(r' FROM ("?\w+"?(?:, "?\w+"?)*)$')
_ASSIGNED = re.compile(r'(?:^|, )"?(\w+)"?=(?!=)')
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|\?")
# a placeholder as an expression, with the cast PostgreSQL's compiler may add
_BOUND = re.compile(r"(?:%\(\w+\)s|\?)(?:::[A-Z][A-Z ]*)?")
_INFO = "change_guard"
_SELECTED = "change_guard.selected"
_HERE = __file__
# email_service modules that only carry a session or its scope: not a write's author
_PLUMBING = ("/email_service/store/db.py", "/email_service/store/scope.py")
_EXEMPT = ("/email_service/store/migrations/", "/alembic/")
_TESTS = "/tests/"
_FLUSHING = threading.local()
_UNANNOUNCED_FILES = tuple("/" + path for path, _name in UNANNOUNCED)


@dataclass
class Write:
    """One statement that changed a tracked table."""

    table: str
    kind: str  # insert | update | delete
    columns: frozenset[str]
    ids: set[str] | None  # None: the statement did not name its rows
    where: str  # the application frame that wrote it


@dataclass
class _Tx:
    writes: list[Write] = field(default_factory=list)
    covered: set[tuple[str, str]] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    savepoints: list[tuple[str, int]] = field(default_factory=list)


class Guard:
    """Collects uncovered writes while :attr:`active`."""

    def __init__(self) -> None:
        self.active = False
        self.violations: list[str] = []
        self.checked = 0  # transactions with tracked writes that were checked
        self._lock = threading.Lock()

    def take(self) -> list[str]:
        """The violations so far, cleared."""
        with self._lock:
            found, self.violations = self.violations, []
            return found

    def report(self, found: list[str]) -> None:
        with self._lock:
            self.violations.extend(found)
            self.checked += 1


GUARD = Guard()


def _tx(conn: Any) -> _Tx:
    state: _Tx | None = conn.info.get(_INFO)
    if state is None:
        state = conn.info[_INFO] = _Tx()
    return state


def _norm(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes) and len(value) == 16:
        return str(uuid.UUID(bytes=value))
    text = str(value)
    if len(text) == 32:
        try:
            return str(uuid.UUID(hex=text))
        except ValueError:
            return text
    return text


class _Params:
    """Values of the placeholders of one statement execution."""

    def __init__(self, sql: str, params: Any) -> None:
        self.sql = sql
        self.params = params

    def at(self, match: re.Match[str]) -> Any:
        if match.group(1) is not None:
            return self.params[match.group(1)]
        return self.params[self.sql.count("?", 0, match.start())]


_UNNEST_LOG = re.compile(r"\s*INSERT INTO change_log \([^)]*\)\s+SELECT .* FROM unnest\(", re.S)


def _arrays(parameters: Any, executemany: bool) -> Iterator[tuple[list[Any], list[Any]]]:
    """(types, entity ids) of each execution of the array form of the change-log INSERT."""
    runs = parameters if executemany else [parameters]
    for run in runs:
        yield list(run["type"]), list(run["entity_id"])


def _executions(sql: str, parameters: Any, executemany: bool) -> list[_Params]:
    # insertmanyvalues hands one batch over as one flat set, executemany or not
    many = isinstance(parameters, (list, tuple)) and parameters
    if executemany and many and isinstance(parameters[0], (tuple, list, dict)):
        return [_Params(sql, p) for p in parameters]
    return [_Params(sql, parameters)]


def _value_groups(values: str) -> Iterator[tuple[int, list[str]]]:
    """Each ``( ... )`` of a VALUES list: its offset in the list and its items."""
    depth, start = 0, 0
    for i, ch in enumerate(values):
        if ch == "(":
            if depth == 0:
                start = i + 1
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                yield start, _split(values[start:i])
                if not values[i + 1 :].lstrip().startswith(","):
                    return


def _split(items: str) -> list[str]:
    out, depth, current = [], 0, ""
    for ch in items:
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    out.append(current)
    return out


def _inserted(
    sql: str, cols: list[str], values: str, offset: int, runs: list[_Params]
) -> list[dict[str, Any]]:
    """Column values of each inserted row (only the columns given by a placeholder)."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        for start, items in _value_groups(values):
            row: dict[str, Any] = {}
            position = offset + start
            for name, item in zip(cols, items, strict=False):
                found = _PLACEHOLDER.search(item)
                if found is not None:
                    shifted = _PLACEHOLDER.search(sql, position + found.start())
                    assert shifted is not None
                    row[name] = run.at(shifted)
                position += len(item) + 1
            rows.append(row)
    return rows


def _keyed(
    sql: str, where: str | None, offset: int, table: str, key: str, runs: list[_Params]
) -> set[str] | None:
    """The primary keys a WHERE names (``t.key = x`` or ``t.key IN (...)``), if it does."""
    if not where:
        return None
    column = rf'"?{table}"?\."?{key}"?'
    equal = re.search(rf"(?:^|\(| AND ){column} = (%\(\w+\)s|\?)", where)
    within = re.search(rf"(?:^|\(| AND ){column} IN \(([^)]*)\)", where)
    if equal is None and within is None:
        return None
    ids: set[str] = set()
    for run in runs:
        for match in (equal, within):
            if match is None:
                continue
            begin = offset + match.start(1)
            for placeholder in _PLACEHOLDER.finditer(sql, begin, offset + match.end(1)):
                ids.add(_norm(run.at(placeholder)))
    return ids


def _set_columns(sql: str, found: re.Match[str], table: str, runs: list[_Params]) -> frozenset[str]:
    """The columns an UPDATE sets to a new value.

    ``c=t.c`` keeps the value (it holds back an ``onupdate``), and so does ``c=x`` where the
    WHERE requires ``t.c = y`` with ``y`` equal to ``x`` (a write conditional on the value).
    """
    assignments = list(_ASSIGNED.finditer(found.group(2)))
    where, where_at = found.group(3) or "", found.start(3)
    columns = set()
    for n, assigned in enumerate(assignments):
        name = assigned.group(1)
        end = assignments[n + 1].start() if n + 1 < len(assignments) else len(found.group(2))
        expression = found.group(2)[assigned.end() : end].strip()
        if re.fullmatch(rf'"?{table}"?\."?{name}"?', expression):
            continue
        value = _BOUND.fullmatch(expression)
        required = re.search(rf'"?{table}"?\."?{name}"? = (%\(\w+\)s|\?)', where)
        if value is not None and required is not None:
            at_value = _PLACEHOLDER.match(
                sql, found.start(2) + assigned.end() + _lead(found.group(2), assigned.end())
            )
            at_required = _PLACEHOLDER.match(sql, where_at + required.start(1))
            if at_value and at_required and all(r.at(at_value) == r.at(at_required) for r in runs):
                continue
        columns.add(name)
    return frozenset(columns)


def _lead(text: str, at: int) -> int:
    return len(text[at:]) - len(text[at:].lstrip())


def _author() -> str | None:
    """``file:line`` of the application code that wrote, or None for a test's own write.

    The nearest frame in ``email_service`` (not the session plumbing) or in ``tests``
    decides: a test's code run from inside the application (a monkeypatched step standing
    for a concurrent writer) is the test's.
    """
    frame = sys._getframe(2)
    author: str | None = None
    flushed = _FLUSHING.__dict__.get("author")  # an ORM flush of rows the application changed
    while frame is not None:
        name = frame.f_code.co_filename
        if any(part in name for part in _EXEMPT):
            return None
        if (
            name.endswith(_UNANNOUNCED_FILES)
            and (
                f"email_service/{name.split('/email_service/', 1)[1]}",
                frame.f_code.co_name,
            )
            in UNANNOUNCED
        ):
            return None
        if author is None and "/email_service/" in name and not name.endswith(_PLUMBING):
            author = f"{name.split('/email_service/', 1)[1]}:{frame.f_lineno}"
        elif author is None and _TESTS in name and name != _HERE:
            return flushed
        frame = frame.f_back  # type: ignore[assignment]
    return author or flushed


def _changed_by(target: Any, *_args: Any) -> None:
    """An ORM object of a tracked table set or added: remember if the application did it
    (a test may flush it later, committing a session it opened)."""
    if GUARD.active:
        author = _author()
        if author is not None:
            inspect(target).info[_INFO] = author


def _flushing(_mapper: Any, _conn: Any, target: Any) -> None:
    _FLUSHING.author = inspect(target).info.pop(_INFO, None) or _FLUSHING.__dict__.get("author")


def _flushed(_mapper: Any, _conn: Any, _target: Any) -> None:
    _FLUSHING.author = None


def _after_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if not GUARD.active:
        return
    head = statement.lstrip()[:7].upper()
    if head not in ("INSERT ", "UPDATE ", "DELETE "):
        return
    if head == "INSERT ":
        if _UNNEST_LOG.match(statement):  # one tenant's rows as arrays (store/change_log.py)
            state = _tx(conn)
            for kinds, entities in _arrays(parameters, executemany):
                for kind, entity in zip(kinds, entities, strict=True):
                    state.covered.add((str(kind), str(entity)))
                    state.types.add(str(kind))
            return
        found = _INSERT.match(statement)
        if found is None:
            return
        table = found.group(1)
        if table == "change_log":
            cols = [c.strip().strip('"') for c in found.group(2).split(",")]
            state = _tx(conn)
            runs = _executions(statement, parameters, executemany)
            for row in _inserted(statement, cols, found.group(3), found.start(3), runs):
                state.covered.add((str(row["type"]), str(row["entity_id"])))
                state.types.add(str(row["type"]))
            return
        if table not in TRACKED:
            return
        cols = [c.strip().strip('"') for c in found.group(2).split(",")]
        key = TRACKED[table][1]
        runs = _executions(statement, parameters, executemany)
        rows = _inserted(statement, cols, found.group(3), found.start(3), runs)
        named = all(key in r for r in rows) and " ON CONFLICT " not in statement
        ids = {_norm(r[key]) for r in rows} if named else None  # skipped rows: unknown
        _note(conn, cursor, Write(table, "insert", frozenset(cols), ids, ""))
        return
    if head == "UPDATE ":
        found = _UPDATE.match(statement)
        if found is None or found.group(1) not in TRACKED:
            return
        table = found.group(1)
        where, offset = found.group(3), found.start(3)
        runs = _executions(statement, parameters, executemany)
        columns = _set_columns(statement, found, table, runs)
        kind = "update"
    else:
        found = _DELETE.match(statement)
        if found is None or found.group(1) not in TRACKED:
            return
        table = found.group(1)
        columns = frozenset()
        where, offset = found.group(2), found.start(2)
        kind = "delete"
    if kind == "update" and columns <= HIDDEN[table]:
        return
    runs = _executions(statement, parameters, executemany)
    ids = _keyed(statement, where, offset, table, TRACKED[table][1], runs)
    if ids is None:  # the rows the statement was about to change, read just before it
        ids = conn.info.pop(_SELECTED, None)
    _note(conn, cursor, Write(table, kind, columns, ids, ""))


def _before_execute(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """An UPDATE/DELETE of the application that names no primary keys: read which rows its
    WHERE matches, in its transaction, so that each needs its own change-log row."""
    conn.info.pop(_SELECTED, None)
    if not GUARD.active or statement.lstrip()[:7].upper() not in ("UPDATE ", "DELETE "):
        return
    runs = _executions(statement, parameters, executemany)
    update = _UPDATE.match(statement)
    joined = ""  # UPDATE ... SET ... FROM other: the WHERE may name it
    if update is not None:
        table, where, at = update.group(1), update.group(3), update.start(3)
        if table in TRACKED and _set_columns(statement, update, table, runs) <= HIDDEN[table]:
            return
        also = _UPDATE_FROM.search(update.group(2))
        joined = f", {also.group(1)}" if also else ""
    else:
        delete = _DELETE.match(statement)
        if delete is None:
            return
        table, where, at = delete.group(1), delete.group(2), delete.start(2)
    if table not in TRACKED or where is None:
        return
    key = TRACKED[table][1]
    if _keyed(statement, where, at, table, key, runs) is not None:
        return
    if _author() is None:
        return
    query = f"SELECT {table}.{key} FROM {table}{joined} WHERE {where}"
    holes = where.count("?")
    raw = conn.connection.dbapi_connection.cursor()
    try:
        ids: set[str] = set()
        for run in runs:
            params = run.params
            if isinstance(params, (tuple, list)):
                params = tuple(params[len(params) - holes :]) if holes else ()
            raw.execute(query, params)
            ids.update(_norm(value) for (value,) in raw.fetchall())
    finally:
        raw.close()
    conn.info[_SELECTED] = ids


def _note(conn: Any, cursor: Any, write: Write) -> None:
    if getattr(cursor, "rowcount", -1) == 0:
        return
    author = _author()
    if author is None:
        return
    write.where = author
    _tx(conn).writes.append(write)


def _begin(conn: Any) -> None:
    conn.info[_INFO] = _Tx()


def _savepoint(conn: Any, name: str) -> None:
    state = _tx(conn)
    state.savepoints.append((name, len(state.writes)))


def _rollback_savepoint(conn: Any, name: str, context: Any) -> None:
    state = _tx(conn)
    while state.savepoints:
        mark, size = state.savepoints.pop()
        if mark == name:
            del state.writes[size:]
            return


def _release_savepoint(conn: Any, name: str, context: Any) -> None:
    state = _tx(conn)
    while state.savepoints:
        if state.savepoints.pop()[0] == name:
            return


def _commit(conn: Any) -> None:
    state: _Tx | None = conn.info.pop(_INFO, None)
    if state is None or not state.writes or not GUARD.active:
        return
    GUARD.report(check(state))


def _rollback(conn: Any) -> None:
    conn.info.pop(_INFO, None)


def check(state: _Tx) -> list[str]:
    """What the transaction wrote and did not announce."""
    found = []
    for write in state.writes:
        type_ = TRACKED[write.table][0]
        if write.ids is None:
            if type_ not in state.types:
                found.append(_say(write, f"no {type_} row in its transaction"))
            continue
        missing = sorted(i for i in write.ids if (type_, i) not in state.covered)
        if missing:
            found.append(_say(write, f"no {type_} row for {', '.join(missing)}"))
    return found


def _say(write: Write, what: str) -> str:
    columns = f" of {', '.join(sorted(write.columns))}" if write.kind == "update" else ""
    return f"{write.kind} {write.table}{columns} at {write.where}: {what}"


_LISTENERS: Sequence[tuple[str, Any]] = (
    ("before_cursor_execute", _before_execute),
    ("after_cursor_execute", _after_execute),
    ("begin", _begin),
    ("savepoint", _savepoint),
    ("rollback_savepoint", _rollback_savepoint),
    ("release_savepoint", _release_savepoint),
    ("commit", _commit),
    ("rollback", _rollback),
)


def install() -> None:
    """Listen on every engine, and on the ORM classes of the tracked tables (once)."""
    if event.contains(Engine, "commit", _commit):
        return
    for name, fn in _LISTENERS:
        event.listen(Engine, name, fn)
    for mapper in Base.registry.mappers:
        if mapper.local_table.name not in TRACKED:
            continue
        for column in mapper.column_attrs:
            event.listen(column.class_attribute, "set", _changed_by)
        for when in ("insert", "update", "delete"):
            event.listen(mapper, f"before_{when}", _flushing)
            event.listen(mapper, f"after_{when}", _flushed)
    event.listen(Session, "transient_to_pending", lambda _session, target: _changed_by(target))


@contextmanager
def watching() -> Iterator[Guard]:
    """Check transactions committed inside; the caller reads :meth:`Guard.take`."""
    install()
    GUARD.take()
    GUARD.active = True
    try:
        yield GUARD
    finally:
        GUARD.active = False
