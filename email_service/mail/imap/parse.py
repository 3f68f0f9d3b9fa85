"""IMAP response reader and tokenizer (RFC 9051 §4, §7; RFC 3501 §9 grammar).

``ResponseReader`` pulls bytes from a socket incrementally and returns one complete
response at a time: its text lines plus the literals (``{n}``, and ``~{n}`` of RFC 3516
BINARY) between them, each read exactly, so a FETCH response is available the moment
its last byte arrived and nothing larger than one response is ever held.
``parse_response`` turns that into a :class:`Response`; the value model is:

- atom -> ``str`` (``FLAGS``, ``\\Seen``, ``BODY[HEADER]``, ``42``)
- quoted string or literal -> ``bytes``
- ``NIL`` -> ``None``
- parenthesized list -> ``list``

Anything the grammar does not allow raises :class:`ImapProtocolError`, never another error.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Protocol

from email_service.errors import RemotePermanentError, RemoteTemporaryError

Token = str | bytes | None | list["Token"]

# Bytes asked of the kernel per recv: large enough that a batch of small messages costs
# few system calls, small enough to stay far below the worker's memory budget.
RECV_SIZE = 1 << 20
# A response line (text outside literals). SEARCH answers without ESEARCH list every UID
# on one line (~8 bytes per UID): 32 MiB covers 4 million UIDs and bounds a runaway server.
MAX_LINE = 32 << 20
# The largest literal (one message body) accepted; bigger ones end the connection rather
# than the worker's memory. Servers commonly cap messages at 25-150 MB.
MAX_LITERAL = 256 << 20
# Statuses that carry resp-text with an optional [response code] (RFC 9051 §7.1).
STATUS_KINDS = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})

_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,12})\}\Z")
_TAG_AND_KIND = re.compile(rb"([^\x00-\x20\x7f]+) (?:(\d{1,20}) )?([A-Za-z][A-Za-z0-9.\-]*)")
# Tokens: ( ) "quoted" or an atom. Atoms may carry a [section] with spaces inside
# (BODY[HEADER.FIELDS (A B)]), and ']' is an ASTRING-CHAR (RFC 9051 §9) except inside a
# response code, where it closes the code. Possessive quantifiers: no backtracking, so
# hostile input costs linear time.
_ATOM = rb"(?:[^\x00-\x20\x7f(){\"\[%s]++|\[[^\]\x00-\x1f]*+\]|\[(?![^\]\x00-\x1f]*+\]))++"
_QUOTED_BODY = rb'(?:[^"\\\r\n]++|\\[^\r\n])*+'


def _token_patterns(atom: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """(the longest run of tokens at a position, one token with a group per kind)."""
    run = rb'(?: *+(?:[()]|"' + _QUOTED_BODY + rb'"|' + atom + rb"))*+ *+"
    token = rb' *+(?:(\()|(\))|"(' + _QUOTED_BODY + rb')"|(' + atom + rb"))"
    return re.compile(run), re.compile(token)


_RUN, _TOKEN = _token_patterns(_ATOM % b"")
_CODE_RUN, _CODE_TOKEN = _token_patterns(_ATOM % rb"\]")
_UNESCAPE = re.compile(rb"\\(.)")
_CODE_START = re.compile(rb"\[([^\x00-\x20\x7f\[\]]+)")
_DIGITS_ONLY = re.compile(rb"[0-9 ]*\Z")
_LITERAL_MARK = object()


class ImapProtocolError(RemotePermanentError):
    """The server sent something the IMAP grammar does not allow."""

    code = "imap_protocol_error"


class Receiver(Protocol):
    """What the reader needs of a socket (``socket.socket`` and ``ssl.SSLSocket`` fit)."""

    def recv(self, bufsize: int, /) -> bytes: ...

    def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> int: ...


@dataclass(slots=True)
class Response:
    """One server response: untagged (``*``), continuation (``+``) or tagged."""

    tag: str
    kind: str  # upper-cased keyword: OK, FETCH, EXISTS, LIST ...; "+" for continuations
    number: int | None = None  # "* 12 FETCH", "* 3 EXISTS"
    code: str | None = None  # response code name of status responses: "UIDNEXT"
    code_args: list[Token] = field(default_factory=list)
    text: str = ""  # human-readable resp-text, or the continuation's text
    data: list[Token] = field(default_factory=list)

    @property
    def untagged(self) -> bool:
        """True for ``*`` responses."""
        return self.tag == "*"


class ResponseReader:
    """Reads complete responses from a socket, literal by literal, never more than one.

    Bytes land in one reusable buffer via ``recv_into`` (no copy per read); a literal is
    copied out once, or, when larger than what is buffered, received straight into its
    own buffer.
    """

    def __init__(
        self, sock: Receiver, *, max_line: int = MAX_LINE, max_literal: int = MAX_LITERAL
    ) -> None:
        self.sock = sock
        self.max_line = max_line
        self.max_literal = max_literal
        self.buf = bytearray(RECV_SIZE)
        self.start = 0  # first unconsumed byte
        self.end = 0  # end of received bytes
        self.literal_bytes = 0  # total literal bytes received (for progress and benches)

    def buffered(self) -> int:
        """Bytes received but not consumed yet (must be 0 when STARTTLS switches)."""
        return self.end - self.start

    def read(self) -> Response:
        """Read and parse the next response."""
        return parse_segments(*self.read_segments())

    def read_segments(self) -> tuple[list[bytes], list[bytes]]:
        """The next response as text lines and the literals that follow all but the last."""
        texts: list[bytes] = []
        literals: list[bytes] = []
        while True:
            line = self._read_line()
            match = _LITERAL_AT_END.search(line) if line.endswith(b"}") else None
            if match is None:
                texts.append(line)
                return texts, literals
            size = int(match.group(1))
            if size > self.max_literal:
                raise ImapProtocolError(f"literal of {size} bytes exceeds {self.max_literal}")
            texts.append(line[: match.start()])
            literals.append(self._read_exact(size))
            self.literal_bytes += size

    def _fill(self) -> None:
        """Receive more bytes after ``end``, first moving pending bytes to the front."""
        buf = self.buf
        if self.start:
            pending = self.end - self.start
            buf[:pending] = buf[self.start : self.end]
            self.start, self.end = 0, pending
        if self.end == len(buf):
            buf.extend(bytes(len(buf)))
        got = self.sock.recv_into(memoryview(buf)[self.end :], len(buf) - self.end)
        if not got:
            raise RemoteTemporaryError("the IMAP server closed the connection")
        self.end += got

    def _read_line(self) -> bytes:
        end = self.buf.find(b"\r\n", self.start, self.end)
        while end < 0:
            if self.end - self.start > self.max_line:
                raise ImapProtocolError(f"response line longer than {self.max_line} bytes")
            scanned = max(0, self.end - self.start - 1)
            self._fill()
            end = self.buf.find(b"\r\n", self.start + scanned, self.end)
        line = bytes(self.buf[self.start : end])
        self.start = end + 2
        if self.start == self.end and len(self.buf) > RECV_SIZE:
            self.buf = bytearray(RECV_SIZE)  # give back what one huge line needed
            self.start = self.end = 0
        return line

    def _read_exact(self, size: int) -> bytes:
        avail = self.end - self.start
        if avail >= size:
            data = bytes(memoryview(self.buf)[self.start : self.start + size])
            self.start += size
            return data
        # Received straight into the buffer of the bytes object BytesIO hands out at the
        # end (CPython's getvalue() does not copy an exactly-filled, unexported buffer):
        # one copy of a large body in memory, never two.
        target = io.BytesIO()
        target.seek(size - 1)
        target.write(b"\0")
        with target.getbuffer() as view:
            view[:avail] = memoryview(self.buf)[self.start : self.end]
            self.start = self.end = 0
            got = avail
            while got < size:
                n = self.sock.recv_into(view[got:], size - got)
                if not n:
                    raise RemoteTemporaryError("the IMAP server closed the connection mid-literal")
                got += n
        return target.getvalue()


def parse_segments(texts: list[bytes], literals: list[bytes]) -> Response:
    """Parse one response given as text segments with literals between them."""
    first = texts[0]
    if first.startswith(b"+"):
        return Response("+", "+", text=_text(first[2:] if first[1:2] == b" " else first[1:]))
    match = _TAG_AND_KIND.match(first)
    if match is None:
        raise ImapProtocolError(f"malformed response {first[:80]!r}")
    tag = match.group(1).decode("ascii", "replace")
    number = int(match.group(2)) if match.group(2) else None
    kind = match.group(3).decode("ascii").upper()
    rest = first[match.end() :]
    if kind in STATUS_KINDS and number is None:
        return _status_response(tag, kind, rest, texts[1:], literals)
    if tag != "*":
        raise ImapProtocolError(f"tagged response with status {kind!r}")
    if rest and rest[:1] != b" ":
        raise ImapProtocolError(f"malformed response {first[:80]!r}")
    response = Response(tag, kind, number)
    if kind == "SEARCH" and not literals and _DIGITS_ONLY.match(rest):
        response.data = [word.decode("ascii") for word in rest.split()]
    else:
        response.data = tokenize([rest, *texts[1:]], literals)
    return response


def _status_response(
    tag: str, kind: str, rest: bytes, more: list[bytes], literals: list[bytes]
) -> Response:
    # resp-text = ["[" resp-text-code "]" SP] text (RFC 9051 §7.1); literals can only
    # occur inside the code, e.g. a mailbox name in [REFERRAL ...] or in our BADCHARSET.
    if tag != "*" and kind not in {"OK", "NO", "BAD"}:
        raise ImapProtocolError(f"tagged response with status {kind!r}")
    response = Response(tag, kind)
    body = rest[1:] if rest[:1] == b" " else rest
    code = _CODE_START.match(body)
    if code is None:
        response.text = _text(b"".join([body, *more]))
        return response
    response.code = code.group(1).decode("ascii", "replace").upper()
    tokens, segment, pos = _tokenize_code([body, *more], literals, code.end())
    response.code_args = tokens
    tail = [body, *more][segment][pos:]
    response.text = _text(tail.lstrip(b" "))
    return response


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def tokenize(texts: list[bytes], literals: list[bytes]) -> list[Token]:
    """Tokens of text segments joined by literals; lists are nested Python lists."""
    tokens, segment, pos = _scan(texts, literals, 0, _RUN, _TOKEN, stop_at_bracket=False)
    if segment != len(texts) - 1 or pos != len(texts[-1]):
        raise ImapProtocolError("unexpected text after response data")
    return tokens


def _tokenize_code(
    texts: list[bytes], literals: list[bytes], start: int
) -> tuple[list[Token], int, int]:
    return _scan(texts, literals, start, _CODE_RUN, _CODE_TOKEN, stop_at_bracket=True)


def _scan(
    texts: list[bytes],
    literals: list[bytes],
    start: int,
    run: re.Pattern[bytes],
    token: re.Pattern[bytes],
    *,
    stop_at_bracket: bool,
) -> tuple[list[Token], int, int]:
    """Scan tokens from texts[0][start:]; return them, and the segment/offset where it stopped."""
    root: list[Token] = []
    stack = [root]
    pos = start
    for segment, text in enumerate(texts):
        pos = pos if segment == 0 else 0
        pos = _scan_text(text, pos, run, token, stack)
        if stop_at_bracket and len(stack) == 1 and text[pos : pos + 1] == b"]":
            return root, segment, pos + 1
        if pos < len(text):
            raise ImapProtocolError(f"unexpected {text[pos : pos + 20]!r} in response")
        if segment < len(literals):
            stack[-1].append(literals[segment])
    if stop_at_bracket:
        raise ImapProtocolError("response code without closing ']'")
    if len(stack) != 1:
        raise ImapProtocolError("unbalanced parentheses in response")
    return root, len(texts) - 1, pos


def _scan_text(
    text: bytes,
    pos: int,
    run: re.Pattern[bytes],
    token: re.Pattern[bytes],
    stack: list[list[Token]],
) -> int:
    """Append the tokens of the longest valid run at ``pos``; return where it ended."""
    end = run.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty run
    for opened, closed, quoted, atom in token.findall(text, pos, end):
        if atom:
            word = None if atom.upper() == b"NIL" else atom.decode("utf-8", "surrogateescape")
            stack[-1].append(word)
        elif opened:
            inner: list[Token] = []
            stack[-1].append(inner)
            stack.append(inner)
        elif closed:
            if len(stack) == 1:
                raise ImapProtocolError("unbalanced ')' in response")
            stack.pop()
        else:
            stack[-1].append(_UNESCAPE.sub(rb"\1", quoted) if b"\\" in quoted else quoted)
    return end


def text_of(token: Token) -> str:
    """A string, literal or atom as text (8-bit bytes survive via surrogateescape)."""
    if isinstance(token, bytes):
        return token.decode("utf-8", "surrogateescape")
    if isinstance(token, str):
        return token
    raise ImapProtocolError(f"expected a string, got {token!r}")


def number_of(token: Token) -> int:
    """A number atom as int."""
    if isinstance(token, str) and token.isdigit():
        return int(token)
    raise ImapProtocolError(f"expected a number, got {token!r}")
