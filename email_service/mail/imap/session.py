"""The IMAP client the sync engine uses: one :class:`ImapSession` per connection.

A small client of our own on ``socket``/``ssl`` (imapclient has no pipelining and no
streaming body fetch): greeting, STARTTLS, login, ENABLE QRESYNC happen in the
constructor; then the methods below, each one command or a pipelined series of them.
The parts live beside this module: ``imap_parse`` (reader, tokenizer), ``imap_conn``
(socket, TLS, tags, literals, error mapping), ``imap_codec`` (quoting, UID sets, modified
UTF-7, dates), ``imap_folders`` (LIST/STATUS, roles), ``imap_fetch`` (streaming FETCH,
SELECT answers), ``imap_types`` (the values returned).

Errors: :class:`RemoteAuthError` for refused credentials, :class:`RemoteTemporaryError`
for timeouts, lost connections and ``NO [UNAVAILABLE]``-like answers,
:class:`RemotePermanentError` (:class:`ImapProtocolError` among them) for the rest;
:class:`HeaderInjectionError`/:class:`ValidationError` for arguments refused before sending.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from types import TracebackType

from email_service.errors import RemoteError, RemotePermanentError, ValidationError
from email_service.mail.imap import folders as imap_folders
from email_service.mail.imap import login as imap_login
from email_service.mail.imap.codec import (
    Arg,
    Literal,
    check_criteria,
    check_uid_set,
    compact_uid_set,
    decode_folder_name,
    encode_folder_name,
    flag_list,
    format_internaldate,
    mailbox_arg,
    search_string,
    uid_set_chunks,
)
from email_service.mail.imap.conn import (
    SECURITY_MODES,
    ImapConnection,
    UntaggedHandler,
    open_socket,
)
from email_service.mail.imap.fetch import (
    SelectCollector,
    copyuid_map,
    esearch_all,
    flags_from,
    message_from,
    stream_fetch,
)
from email_service.mail.imap.parse import MAX_LITERAL, ImapProtocolError, Response, number_of
from email_service.mail.imap.types import (
    FetchedMessage,
    FlagsUpdate,
    Folder,
    FolderStatus,
    SelectResult,
)
from email_service.mail.sasl import BearerToken

__all__ = [
    "FetchedMessage",
    "FlagsUpdate",
    "Folder",
    "FolderStatus",
    "ImapProtocolError",
    "ImapSession",
    "SelectResult",
    "compact_uid_set",
    "decode_folder_name",
    "encode_folder_name",
    "search_string",
]

log = logging.getLogger(__name__)

# Message bodies per UID FETCH and commands in flight: 500 x 2 keeps the server streaming
# without pause (the bench: round trips, not bytes, are what costs) while the memory held
# is one message; bigger batches gain nothing measurable.
FETCH_BATCH = 500
FETCH_PIPELINE = 2
# Header-only and flag fetches return little per message: larger batches, same depth.
SMALL_ITEM_BATCH = 2000
BODY_ITEM = "BODY[]"
HEADER_ITEM = "BODY[HEADER]"


class ImapSession:
    """One authenticated IMAP connection (context manager); see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        security: str,
        username: str,
        password: str | BearerToken,
        *,
        timeout: float,
        connect_address: str | None = None,
        ca_file: str | None = None,
        max_literal: int = MAX_LITERAL,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ValidationError(f"security must be one of {SECURITY_MODES}", field="security")
        self.selected: str | None = None
        self._has_modseq = False  # the selected mailbox keeps mod-sequences
        sock = open_socket(
            host,
            port,
            implicit_tls=security == "ssl",
            timeout=timeout,
            connect_address=connect_address,
            ca_file=ca_file,
        )
        self._conn = ImapConnection(sock, host=host, max_literal=max_literal)
        try:
            preauth = imap_login.greet(self._conn)
            if security == "starttls":
                imap_login.starttls(self._conn, host, ca_file, preauth)
            if not preauth:
                imap_login.login(self._conn, username, password, port)
            imap_login.enable(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> ImapSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.logout()
        else:
            self._conn.close()

    @property
    def capabilities(self) -> frozenset[str]:
        """What the server offers now (upper case), e.g. ``QRESYNC``, ``MOVE``."""
        return self._conn.capabilities

    @property
    def enabled(self) -> frozenset[str]:
        """Extensions ENABLEd for this connection (RFC 5161), e.g. ``QRESYNC``."""
        return self._conn.enabled

    @property
    def exists(self) -> int:
        """Messages in the selected folder, kept current from EXISTS/EXPUNGE/VANISHED."""
        return self._conn.exists

    @property
    def alerts(self) -> list[str]:
        """[ALERT] texts the server sent; RFC 9051 §7.1 wants them shown to the user."""
        return self._conn.alerts

    @property
    def literal_bytes(self) -> int:
        """Literal bytes received so far (bodies, mostly): for progress reports."""
        return self._conn.reader.literal_bytes

    def _run(
        self, command: list[Arg], what: str, handler: UntaggedHandler | None = None
    ) -> Response:
        return self._conn.run(command, what, handler or _nothing)

    # ---- mailboxes -----------------------------------------------------------------

    def list_folders(self, with_status: bool = True) -> list[Folder]:
        """All folders with roles; statuses in the same round trip with LIST-STATUS (RFC 5819)."""
        return imap_folders.list_folders(self._conn, with_status)

    def status(self, raw_name: str) -> FolderStatus:
        """STATUS of one folder (RFC 9051 §6.3.11)."""
        return imap_folders.folder_status(self._conn, raw_name)

    def create_folder(self, raw_name: str, role: str | None = None) -> bool:
        """CREATE a folder (modified UTF-7 name); True if the role went with it (RFC 6154 §3)."""
        self._run(imap_folders.create_command(raw_name, role, self.capabilities), "CREATE")
        return role is not None and "CREATE-SPECIAL-USE" in self.capabilities

    def rename_folder(self, raw_name: str, new_raw_name: str) -> None:
        """RENAME a folder; its children move with it (RFC 9051 §6.3.6)."""
        self._run([b"RENAME", mailbox_arg(raw_name), mailbox_arg(new_raw_name)], "RENAME")

    def delete_folder(self, raw_name: str) -> None:
        """DELETE a folder and the messages in it (RFC 9051 §6.3.5); not the selected one."""
        self._run([b"DELETE", mailbox_arg(raw_name)], "DELETE")

    def close_folder(self) -> None:
        """CLOSE: leave the selected folder, expunging its \\Deleted messages (RFC 9051 §6.4.1)."""
        self._run([b"CLOSE"], "CLOSE")
        self.selected = None

    def unselect(self) -> None:
        """UNSELECT: leave the selected folder without expunging anything (RFC 3691)."""
        self._run([b"UNSELECT"], "UNSELECT")
        self.selected = None

    def subscribe(self, raw_name: str, subscribed: bool = True) -> None:
        """SUBSCRIBE or UNSUBSCRIBE a folder (RFC 9051 §6.3.7, §6.3.8)."""
        verb = b"SUBSCRIBE" if subscribed else b"UNSUBSCRIBE"
        self._run([verb, mailbox_arg(raw_name)], verb.decode())

    def select_folder(
        self, raw_name: str, *, readonly: bool = True, qresync: tuple[int, int] | None = None
    ) -> SelectResult:
        """EXAMINE (or SELECT) a folder, with QRESYNC (uidvalidity, modseq) when enabled.

        With ``qresync`` the result lists UIDs expunged and flags changed since that
        mod-sequence (RFC 7162 §3.2.5); if the UIDVALIDITY differs, the server ignores
        it and the caller sees a new ``uidvalidity``.
        """
        command: list[Arg] = [b"EXAMINE" if readonly else b"SELECT", mailbox_arg(raw_name)]
        if qresync is not None and "QRESYNC" in self._conn.enabled:
            command.append(b"(QRESYNC (%d %d))" % (qresync[0], qresync[1]))
        elif "CONDSTORE" in self._conn.capabilities:
            command.append(b"(CONDSTORE)")  # RFC 7162 §3.1.8
        self.selected = None
        collector = SelectCollector()
        self._run(command, "SELECT", collector)
        self.selected = raw_name
        self._has_modseq = collector.highestmodseq is not None
        return collector.result(readonly)

    # ---- messages ------------------------------------------------------------------

    def search_uids(self, criteria: str = "ALL") -> list[int]:
        """UIDs matching SEARCH criteria built by our code (ESEARCH when offered, RFC 4731)."""
        found: list[int] = []
        esearch = "ESEARCH" in self._conn.capabilities

        def collect(response: Response) -> None:
            if response.kind == "SEARCH":
                found.extend(number_of(word) for word in response.data if isinstance(word, str))
            elif response.kind == "ESEARCH":
                found.extend(esearch_all(response))

        command: list[Arg] = [b"UID", b"SEARCH"]
        if esearch:
            command += [b"RETURN", b"(ALL)"]
        self._run([*command, check_criteria(criteria)], "UID SEARCH", collect)
        return sorted(set(found))

    def _fetch_modseq(self) -> bytes:
        return b" MODSEQ" if self._has_modseq and "CONDSTORE" in self._conn.capabilities else b""

    def fetch_flags(
        self, uid_set: str | Iterable[int] = "1:*", *, changedsince: int | None = None
    ) -> dict[int, FlagsUpdate]:
        """uid -> flags (and modseq), optionally only those changed since a modseq."""
        items = b"(UID FLAGS" + self._fetch_modseq() + b")"
        suffix: list[Arg] = []
        if changedsince is not None and self._has_modseq:
            # RFC 7162 §3.1.4.1. A mailbox without mod-sequences gets all flags instead,
            # a superset of the changed ones.
            suffix = [b"(CHANGEDSINCE %d)" % changedsince]
        sets = [check_uid_set(uid_set)] if isinstance(uid_set, str) else self._sets(uid_set)
        commands = ([b"UID", b"FETCH", s, items, *suffix] for s in sets)
        return dict(stream_fetch(self._conn, commands, FETCH_PIPELINE, flags_from))

    def fetch_messages(
        self,
        uids: Iterable[int],
        *,
        batch: int = FETCH_BATCH,
        pipeline: int = FETCH_PIPELINE,
        newest_first: bool = False,
    ) -> Iterator[FetchedMessage]:
        """Stream whole messages; UIDs that vanished meanwhile are simply absent.

        ``newest_first`` sends the commands for the highest UIDs first (each command's
        messages still come in the server's order, RFC 9051 §6.4.8).
        """
        items = b"(UID FLAGS INTERNALDATE RFC822.SIZE" + self._fetch_modseq() + b" BODY.PEEK[])"
        return self._stream(uids, items, BODY_ITEM, batch, pipeline, newest_first)

    def fetch_headers(
        self, uids: Iterable[int], *, batch: int = SMALL_ITEM_BATCH, pipeline: int = FETCH_PIPELINE
    ) -> Iterator[FetchedMessage]:
        """Like ``fetch_messages`` with ``body`` = the header block only (BODY[HEADER])."""
        items = b"(UID FLAGS INTERNALDATE RFC822.SIZE" + self._fetch_modseq()
        items += b" BODY.PEEK[HEADER])"
        return self._stream(uids, items, HEADER_ITEM, batch, pipeline)

    def _stream(
        self,
        uids: Iterable[int],
        items: bytes,
        body_item: str,
        batch: int,
        pipeline: int,
        newest_first: bool = False,
    ) -> Iterator[FetchedMessage]:
        sets = self._sets(uids, batch)
        if newest_first:
            sets.reverse()
        commands = ([b"UID", b"FETCH", s, items] for s in sets)
        return stream_fetch(self._conn, commands, pipeline, lambda r: message_from(r, body_item))

    @staticmethod
    def _sets(uids: Iterable[int], batch: int = SMALL_ITEM_BATCH) -> list[bytes]:
        return [text.encode("ascii") for text, _count in uid_set_chunks(uids, max(1, batch))]

    # ---- changes -------------------------------------------------------------------

    def store_flags(
        self, uids: Iterable[int], add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        """Add and remove flags, silently (UID STORE +FLAGS.SILENT / -FLAGS.SILENT)."""
        changes = [(b"+FLAGS.SILENT", flag_list(add)), (b"-FLAGS.SILENT", flag_list(remove))]
        changes = [(verb, flags) for verb, flags in changes if flags != b"()"]
        commands = (
            [b"UID", b"STORE", uid_set, verb, flags]
            for uid_set in self._sets(uids)
            for verb, flags in changes
        )
        _consume(stream_fetch(self._conn, commands, FETCH_PIPELINE, _nothing, what="UID STORE"))

    def move(self, uids: Iterable[int], dest_raw_name: str) -> dict[int, int]:
        """MOVE (RFC 6851), else COPY + \\Deleted + UID EXPUNGE; old UID -> new UID if told."""
        mapping: dict[int, int] = {}

        def collect(response: Response) -> None:
            if response.code == "COPYUID" and response.kind == "OK":
                mapping.update(copyuid_map(response))

        target = mailbox_arg(dest_raw_name)
        verb = b"MOVE" if "MOVE" in self._conn.capabilities else b"COPY"
        sets = self._sets(uids)
        for uid_set in sets:
            collect(self._run([b"UID", verb, uid_set, target], f"UID {verb.decode()}", collect))
        if verb == b"COPY":
            self._delete(sets)
        return mapping

    def expunge(self, uids: Iterable[int]) -> None:
        """Mark \\Deleted and expunge exactly these messages (UID EXPUNGE, RFC 4315 §2.1)."""
        if "UIDPLUS" not in self._conn.capabilities:
            raise RemotePermanentError("the server lacks UIDPLUS: cannot expunge only some UIDs")
        self._delete(self._sets(uids))

    def delete(self, uids: Iterable[int]) -> None:
        """Mark \\Deleted; expunge just these by UID when the server has UIDPLUS."""
        self._delete(self._sets(uids))

    def _delete(self, sets: list[bytes]) -> None:
        commands: list[list[Arg]] = []
        for uid_set in sets:
            commands.append([b"UID", b"STORE", uid_set, b"+FLAGS.SILENT", b"(\\Deleted)"])
            if "UIDPLUS" in self._conn.capabilities:
                commands.append([b"UID", b"EXPUNGE", uid_set])
        # Without UIDPLUS a plain EXPUNGE would also remove others' \Deleted messages:
        # the moved originals stay flagged for the next expunge instead.
        _consume(stream_fetch(self._conn, commands, FETCH_PIPELINE, _nothing, what="EXPUNGE"))

    def append(
        self,
        raw_name: str,
        message: bytes,
        flags: Iterable[str] = (),
        internaldate: dt.datetime | None = None,
    ) -> tuple[int, int] | None:
        """APPEND a message; (uidvalidity, uid) from APPENDUID (RFC 4315 §3) when given."""
        binary = b"\0" in message
        if binary and "BINARY" not in self._conn.capabilities:
            raise ValidationError("the message contains NUL and the server lacks BINARY")
        command: list[Arg] = [b"APPEND", mailbox_arg(raw_name), flag_list(flags)]
        if internaldate is not None:
            command.append(format_internaldate(internaldate))
        command.append(Literal(message, binary=binary))  # RFC 3516 §4.3 literal8 for NUL
        response = self._run(command, "APPEND")
        if response.code == "APPENDUID" and len(response.code_args) == 2:
            return number_of(response.code_args[0]), number_of(response.code_args[1])
        return None

    def noop(self) -> None:
        """NOOP: keeps the connection alive and collects pending EXISTS/EXPUNGE."""
        self._run([b"NOOP"], "NOOP")

    def logout(self) -> None:
        """LOGOUT and close; errors on the way out are not reported."""
        try:
            if not self._conn.broken:
                self._conn.execute([b"LOGOUT"])
        except RemoteError:
            pass
        finally:
            self._conn.close()


def _nothing(_response: Response) -> None:
    return None


def _consume(items: Iterator[None]) -> None:
    for _ in items:
        pass
