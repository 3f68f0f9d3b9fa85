"""FETCH responses into values, the pipelined streaming fetch, and SELECT's answers.

``stream_fetch`` keeps up to ``depth`` commands in flight: while the server streams the
answer to one, the next is already queued behind it, so the connection never idles for a
round trip (RFC 9051 §5.5 allows pipelining commands that do not depend on each other).
Each response is handed on as soon as it is complete; nothing accumulates.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from email_service.errors import RemoteError
from email_service.mail.imap.codec import Arg, parse_internaldate, parse_uid_set
from email_service.mail.imap.conn import ImapConnection, raise_for_status
from email_service.mail.imap.parse import ImapProtocolError, Response, Token, number_of, text_of
from email_service.mail.imap.types import FetchedMessage, FlagsUpdate, SelectResult

log = logging.getLogger(__name__)

T = TypeVar("T")
# INTERNALDATE a server sent in a form we cannot read: keep the message, date it at the epoch.
UNKNOWN_DATE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# A UID FETCH that met messages expunged meanwhile may end NO [EXPUNGEISSUED] (RFC 5530 §3);
# the others were delivered, the gone ones are simply absent.
BENIGN_FETCH_CODES = frozenset({"EXPUNGEISSUED"})
# \Recent describes this session, not the message (RFC 9051 §2.3.2 dropped it): storing it
# would make every sync look like a flag change.
SESSION_FLAGS = frozenset({"\\Recent", "\\RECENT", "\\recent"})


def fetch_items(response: Response) -> dict[str, Token]:
    """``* n FETCH (NAME value ...)`` as a dict with upper-case names (RFC 9051 §7.5.2)."""
    data = response.data
    if len(data) != 1 or not isinstance(data[0], list) or len(data[0]) % 2:
        raise ImapProtocolError(f"malformed FETCH response {data!r:.200}")
    items = data[0]
    out: dict[str, Token] = {}
    for i in range(0, len(items), 2):
        name = items[i]
        if not isinstance(name, str):
            raise ImapProtocolError(f"malformed FETCH item name {name!r:.80}")
        out[name.upper()] = items[i + 1]
    return out


def _flags(value: Token) -> frozenset[str]:
    if not isinstance(value, list):
        raise ImapProtocolError(f"malformed FLAGS {value!r:.80}")
    flags = frozenset(text_of(flag) for flag in value)
    return flags - SESSION_FLAGS if flags & SESSION_FLAGS else flags


def _modseq(value: Token) -> int | None:
    # MODSEQ (n) -- a one-element list (RFC 7162 §3.1.4.1)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 1:
        raise ImapProtocolError(f"malformed MODSEQ {value!r:.80}")
    return number_of(value[0])


def _internaldate(value: Token) -> dt.datetime:
    parsed = parse_internaldate(text_of(value)) if value is not None else None
    if parsed is None:
        log.warning("unreadable INTERNALDATE %r", value)
        return UNKNOWN_DATE
    return parsed


def message_from(response: Response, body_item: str) -> FetchedMessage | None:
    """The message of a FETCH response, or None if it carries no body (e.g. a flag update)."""
    if response.kind != "FETCH":
        return None
    items = fetch_items(response)
    body = items.get(body_item)
    uid = items.get("UID")
    if not isinstance(body, bytes) or uid is None:
        return None  # unsolicited flag change, or NIL for a message expunged meanwhile
    size = items.get("RFC822.SIZE")
    return FetchedMessage(
        uid=number_of(uid),
        flags=_flags(items.get("FLAGS", [])),
        internaldate=_internaldate(items.get("INTERNALDATE")),
        size=len(body) if size is None else number_of(size),
        modseq=_modseq(items.get("MODSEQ")),
        body=body,
    )


def flags_from(response: Response) -> tuple[int, FlagsUpdate] | None:
    """(uid, flags) of a FETCH response that has both, else None."""
    if response.kind != "FETCH":
        return None
    items = fetch_items(response)
    uid, flags = items.get("UID"), items.get("FLAGS")
    if uid is None or flags is None:
        return None
    return number_of(uid), FlagsUpdate(_flags(flags), _modseq(items.get("MODSEQ")))


def benign_fetch_failure(response: Response) -> bool:
    """True for a failed FETCH whose other messages were delivered (expunged meanwhile)."""
    return response.kind == "NO" and response.code in BENIGN_FETCH_CODES


def stream_fetch(
    conn: ImapConnection,
    commands: Iterable[Sequence[Arg]],
    depth: int,
    convert: Callable[[Response], T | None],
    *,
    what: str = "UID FETCH",
    benign: Callable[[Response], bool] = benign_fetch_failure,
) -> Iterator[T]:
    """Run commands with up to ``depth`` in flight; yield ``convert`` of each untagged response.

    A failed command raises (after the others in flight are read) unless ``benign`` says
    it may be skipped.
    """
    pending = iter(commands)
    inflight: deque[str] = deque()
    try:
        while True:
            while len(inflight) < max(1, depth):
                command = next(pending, None)
                if command is None:
                    break
                inflight.append(conn.send(command).decode("ascii"))
            if not inflight:
                return
            response = conn.read()
            if response.untagged:
                item = convert(response)
                if item is not None:
                    yield item
            elif response.tag in inflight:
                inflight.remove(response.tag)
                if not benign(response):
                    raise_for_status(response, what)
            else:
                raise ImapProtocolError(f"unexpected response {response.kind} {response.tag!r}")
    finally:
        _drain(conn, inflight)


def _drain(conn: ImapConnection, inflight: deque[str]) -> None:
    """Read the answers of abandoned commands so the connection stays in step."""
    try:
        while inflight and not conn.broken:
            response = conn.read()
            if not response.untagged and response.tag in inflight:
                inflight.remove(response.tag)
    except RemoteError:
        conn.close()


@dataclass(slots=True)
class SelectCollector:
    """Collects SELECT/EXAMINE's untagged answers (RFC 9051 §6.3.2, RFC 7162 §3.2.5)."""

    exists: int = 0
    uidvalidity: int = 0
    uidnext: int = 0
    highestmodseq: int | None = None
    vanished_sets: list[str] = field(default_factory=list)
    changed: dict[int, FlagsUpdate] = field(default_factory=dict)

    def __call__(self, response: Response) -> None:
        """Take one untagged response."""
        if response.kind == "OK" and response.code:
            self._code(response)
        elif response.kind == "EXISTS" and response.number is not None:
            self.exists = response.number
        elif response.kind == "VANISHED":
            self.vanished_sets.append(vanished_set(response))
        elif response.kind == "FETCH":
            update = flags_from(response)
            if update is not None:
                self.changed[update[0]] = update[1]

    def _code(self, response: Response) -> None:
        code, args = response.code, response.code_args
        if code == "CLOSED":
            # RFC 7162 §3.2.11: what came before belongs to the previous mailbox.
            self.exists, self.vanished_sets, self.changed = 0, [], {}
        elif code == "NOMODSEQ":
            self.highestmodseq = None
        elif code in {"UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"} and args:
            setattr(self, code.lower(), number_of(args[0]))

    def result(self, readonly: bool) -> SelectResult:
        """The collected SelectResult; vanished UIDs at or above UIDNEXT are dropped."""
        upper = self.uidnext - 1 if self.uidnext else None
        vanished = sorted(
            {uid for text in self.vanished_sets for uid in parse_uid_set(text, upper)}
        )
        return SelectResult(
            uidvalidity=self.uidvalidity,
            uidnext=self.uidnext,
            exists=self.exists,
            highestmodseq=self.highestmodseq,
            vanished=vanished,
            changed=self.changed,
            readonly=readonly,
        )


def vanished_set(response: Response) -> str:
    """The UID set of ``* VANISHED [(EARLIER)] set`` (RFC 7162 §3.2.10)."""
    data = response.data
    if data and isinstance(data[0], list):
        data = data[1:]
    if len(data) != 1 or not isinstance(data[0], str):
        raise ImapProtocolError(f"malformed VANISHED response {response.data!r:.200}")
    return data[0]


def copyuid_map(response: Response) -> dict[int, int]:
    """old -> new UIDs of ``[COPYUID uidvalidity src dst]`` (RFC 4315 §3), in order."""
    args = response.code_args
    if len(args) != 3 or not all(isinstance(arg, str) for arg in args):
        raise ImapProtocolError(f"malformed COPYUID {args!r:.200}")
    old, new = parse_uid_set(str(args[1])), parse_uid_set(str(args[2]))
    if len(old) != len(new):
        raise ImapProtocolError("COPYUID sets of different sizes")
    return dict(zip(old, new, strict=True))


def esearch_all(response: Response) -> list[int]:
    """UIDs of ``* ESEARCH (TAG "x") UID ALL set`` (RFC 4731 §3.1)."""
    words = response.data
    for index, word in enumerate(words[:-1]):
        if isinstance(word, str) and word.upper() == "ALL":
            following = words[index + 1]
            if isinstance(following, str):
                return parse_uid_set(following)
    return []
