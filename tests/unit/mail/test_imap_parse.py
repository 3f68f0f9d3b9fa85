"""The IMAP response reader and tokenizer: grammar, literals split anywhere, hostile input.

The fake socket here is the seam a real server cannot reach: it hands the reader the same
bytes cut at every possible position, down to one byte per ``recv``.
"""

from __future__ import annotations

import contextlib
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.errors import RemoteTemporaryError
from email_service.mail.imap.parse import (
    ImapProtocolError,
    Response,
    ResponseReader,
    Token,
    parse_segments,
    tokenize,
)


class ChunkSocket:
    """Returns ``data`` in the given chunk sizes (the last size repeats), then EOF."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.sizes = sizes
        self.pos = 0
        self.calls = 0

    def _next_size(self, limit: int) -> int:
        size = self.sizes[min(self.calls, len(self.sizes) - 1)]
        self.calls += 1
        return min(size, limit, len(self.data) - self.pos)

    def recv(self, bufsize: int) -> bytes:
        n = self._next_size(bufsize)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int:
        n = self._next_size(nbytes or len(buffer))
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def read_all(data: bytes, sizes: list[int]) -> list[Response]:
    reader = ResponseReader(ChunkSocket(data, sizes))
    out: list[Response] = []
    while reader.buffered() or reader.sock.pos < len(data):  # type: ignore[attr-defined]
        out.append(reader.read())
    return out


def parse_line(line: bytes, *literals: bytes) -> Response:
    texts = line.split(b"\0")
    assert len(texts) == len(literals) + 1
    return parse_segments(texts, list(literals))


# A session's worth of responses: literals in FETCH, in LIST and inside a list,
# a literal8, unsolicited responses in between, and a tagged end.
BODY = b"Subject: caf\xc3\xa9\r\n\r\n\x01\xff binary \x80 bytes\r\n.\r\n"
STREAM = (
    b"* 3 EXISTS\r\n"
    b'* 1 FETCH (UID 7 FLAGS (\\Seen $Label) INTERNALDATE " 7-Jul-2026 02:44:25 -0700" '
    b"RFC822.SIZE %d MODSEQ (12) BODY[] {%d}\r\n%s)\r\n"
    b"* OK [ALERT] System going down\r\n"
    b'* LIST (\\HasNoChildren) "/" {7}\r\nA "b" c\r\n'
    b"* 2 FETCH (UID 8 BODY[HEADER.FIELDS (SUBJECT)] ~{3}\r\nab\x00 FLAGS ())\r\n"
    b"* VANISHED (EARLIER) 1:3,9\r\n"
    b"E12 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
) % (len(BODY), len(BODY), BODY)


def expected_stream() -> list[tuple[str, str, int | None, list[Token]]]:
    return [
        ("*", "EXISTS", 3, []),
        (
            "*",
            "FETCH",
            1,
            [
                [
                    "UID",
                    "7",
                    "FLAGS",
                    ["\\Seen", "$Label"],
                    "INTERNALDATE",
                    b" 7-Jul-2026 02:44:25 -0700",
                    "RFC822.SIZE",
                    str(len(BODY)),
                    "MODSEQ",
                    ["12"],
                    "BODY[]",
                    BODY,
                ]
            ],
        ),
        ("*", "OK", None, []),
        ("*", "LIST", None, [["\\HasNoChildren"], b"/", b'A "b" c']),
        ("*", "FETCH", 2, [["UID", "8", "BODY[HEADER.FIELDS (SUBJECT)]", b"ab\x00", "FLAGS", []]]),
        ("*", "VANISHED", None, [["EARLIER"], "1:3,9"]),
        ("E12", "OK", None, []),
    ]


def summary(responses: list[Response]) -> list[tuple[str, str, int | None, list[Token]]]:
    return [(r.tag, r.kind, r.number, r.data) for r in responses]


def test_stream_in_one_read() -> None:
    responses = read_all(STREAM, [1 << 20])
    assert summary(responses) == expected_stream()
    alert, done = responses[2], responses[6]
    assert (alert.code, alert.text) == ("ALERT", "System going down")
    assert (done.code, done.code_args, done.text) == (
        "COPYUID",
        ["38505", "304,319:320", "3956:3958"],
        "Done",
    )


def test_stream_one_byte_per_recv() -> None:
    assert summary(read_all(STREAM, [1])) == expected_stream()


def test_stream_split_at_every_byte_boundary() -> None:
    for cut in range(1, len(STREAM)):
        assert summary(read_all(STREAM, [cut, len(STREAM)])) == expected_stream(), cut


def test_literal_bytes_are_counted() -> None:
    reader = ResponseReader(ChunkSocket(STREAM, [5]))
    while reader.sock.pos < len(STREAM) or reader.buffered():  # type: ignore[attr-defined]
        reader.read()
    assert reader.literal_bytes == len(BODY) + 7 + 3


def test_large_literal_received_straight_into_its_buffer() -> None:
    body = bytes(range(256)) * 40_000  # 10 MB, far more than one recv buffer
    data = b"* 1 FETCH (BODY[] {%d}\r\n%s UID 5)\r\nE1 OK done\r\n" % (len(body), body)
    first, done = read_all(data, [65_536, 3, 1 << 20])
    assert first.data == [["BODY[]", body, "UID", "5"]]
    assert done.kind == "OK"


def test_large_literal_is_held_once_not_twice() -> None:
    size = 32 << 20
    data = b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\n" % (size, b"a" * size)
    reader = ResponseReader(ChunkSocket(data, [1 << 20]))
    del data  # only the socket's copy stays, from before tracing
    tracemalloc.start()
    try:
        response = reader.read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(response.data[0][1]) == size  # type: ignore[index,arg-type]
    assert peak < 1.5 * size  # a bytearray copied into bytes would need 2 x size


def test_eof_mid_literal_is_temporary() -> None:
    data = b"* 1 FETCH (BODY[] {100}\r\nonly part"
    reader = ResponseReader(ChunkSocket(data, [7]))
    with pytest.raises(RemoteTemporaryError):
        reader.read()


def test_eof_mid_line_is_temporary() -> None:
    reader = ResponseReader(ChunkSocket(b"* 1 EXIS", [3]))
    with pytest.raises(RemoteTemporaryError):
        reader.read()


def test_literal_over_limit_is_refused_before_reading_it() -> None:
    reader = ResponseReader(
        ChunkSocket(b"* 1 FETCH (BODY[] {1000001}\r\n", [100]), max_literal=10**6
    )
    with pytest.raises(ImapProtocolError, match="exceeds"):
        reader.read()


def test_endless_line_is_refused() -> None:
    reader = ResponseReader(ChunkSocket(b"* " + b"x" * 5000, [1000]), max_line=2048)
    with pytest.raises(ImapProtocolError, match="longer"):
        reader.read()


# ---- tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        (b'"a\\"b\\\\c"', [b'a"b\\c']),
        (b'""', [b""]),
        (b"NIL nil NILS", [None, None, "NILS"]),
        (b"((a) (b (c))) ()", [[["a"], ["b", ["c"]]], []]),
        (b"BODY[HEADER.FIELDS (FROM TO)]<0> x", ["BODY[HEADER.FIELDS (FROM TO)]<0>", "x"]),
        (b"[Gmail]/Sent \\* a]b", ["[Gmail]/Sent", "\\*", "a]b"]),
        (b"  spaced   out  ", ["spaced", "out"]),
        (b"caf\xc3\xa9 \xff", ["café", "\udcff"]),
        (b"a[b", ["a[b"]),
    ],
)
def test_tokens(text: bytes, tokens: list[Token]) -> None:
    assert tokenize([text], []) == tokens


@pytest.mark.parametrize(
    "text",
    [b"(a", b"a)", b'"open', b"a\rb", b'"line\nbreak"', b"{", b"(a))", b"\x00"],
)
def test_malformed_tokens(text: bytes) -> None:
    with pytest.raises(ImapProtocolError):
        tokenize([text], [])


def test_literal_inside_nested_list() -> None:
    assert tokenize([b"(a (b ", b") c)"], [b"lit"]) == [["a", ["b", b"lit"], "c"]]


def test_status_responses_and_codes() -> None:
    greeting = parse_line(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Dovecot ready.")
    assert (greeting.code, greeting.code_args) == (
        "CAPABILITY",
        ["IMAP4rev1", "SASL-IR", "AUTH=PLAIN"],
    )
    assert greeting.text == "Dovecot ready."
    flags = parse_line(b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited")
    assert flags.code_args == [["\\Deleted", "\\Seen", "\\*"]]
    no = parse_line(b"E3 NO [UNAVAILABLE] try later")
    assert (no.tag, no.kind, no.code, no.text) == ("E3", "NO", "UNAVAILABLE", "try later")
    plain = parse_line(b"E4 bad what [is] this")
    assert (plain.kind, plain.code, plain.text) == ("BAD", None, "what [is] this")
    bare = parse_line(b"* OK [CLOSED]")
    assert (bare.code, bare.code_args, bare.text) == ("CLOSED", [], "")
    referral = parse_line(b"* NO [BADCHARSET (\0)] x", b"UTF-8")
    assert referral.code_args == [[b"UTF-8"]]


def test_continuations() -> None:
    assert parse_line(b"+ Ready").text == "Ready"
    assert parse_line(b"+").kind == "+"
    assert parse_line(b"+ dGVzdA==").text == "dGVzdA=="


def test_search_fast_path_and_modseq_form() -> None:
    assert parse_line(b"* SEARCH 2 5 6").data == ["2", "5", "6"]
    assert parse_line(b"* SEARCH").data == []
    assert parse_line(b"* SEARCH 2 5 (MODSEQ 917162500)").data == [
        "2",
        "5",
        ["MODSEQ", "917162500"],
    ]


@pytest.mark.parametrize(
    "line",
    [b"", b"*", b"* 12", b"E1 FETCH (x)", b"E1 BYE now", b"* 1 FETCH(x)", b"* OK [ALERT unclosed"],
)
def test_malformed_responses(line: bytes) -> None:
    with pytest.raises(ImapProtocolError):
        parse_line(line)


# ---- properties --------------------------------------------------------------------

ATOMS = st.from_regex(rb"\A[A-Za-z0-9\\$.\-+:*%\[\]]{1,12}\Z").filter(
    lambda a: a.upper() != b"NIL" and a.count(b"[") == 0
)
STRINGS = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


def _tree(children: st.SearchStrategy[list[Token]]) -> st.SearchStrategy[list[Token]]:
    return st.lists(children | ATOMS.map(lambda a: a.decode()) | STRINGS | st.none(), max_size=5)


TREES = st.recursive(st.just([]), _tree, max_leaves=30)


def serialize(tokens: list[Token], literals: list[bytes], texts: list[bytes]) -> None:
    """IMAP syntax for a token list; quoted strings for ASCII, literals for the rest."""
    for index, token in enumerate(tokens):
        if index:
            texts[-1] += b" "
        if token is None:
            texts[-1] += b"NIL"
        elif isinstance(token, str):
            texts[-1] += token.encode()
        elif isinstance(token, bytes) and token.isascii() and b"\0" not in token:
            texts[-1] += b'"' + token.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        elif isinstance(token, bytes):
            literals.append(token)
            texts.append(b"")
        else:
            texts[-1] += b"("
            serialize(token, literals, texts)
            texts[-1] += b")"


@settings(max_examples=300, deadline=None)
@given(TREES)
def test_round_trip_of_token_trees(tree: list[Token]) -> None:
    texts, literals = [b""], []
    serialize(tree, literals, texts)
    assert tokenize(texts, literals) == tree


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=4), st.data())
def test_parser_raises_only_protocol_errors(texts: list[bytes], data: st.DataObject) -> None:
    literals = data.draw(
        st.lists(st.binary(max_size=10), min_size=len(texts) - 1, max_size=len(texts) - 1)
    )
    with contextlib.suppress(ImapProtocolError):
        parse_segments(texts, literals)


RESPONSE_BITS = st.sampled_from(
    [b"* ", b"E1 ", b"+ ", b"OK ", b"FETCH ", b"(", b")", b"[", b"]", b'"', b"\\", b"{3}\r\n",
     b"~{2}\r\n", b"{999999999999}\r\n", b"\r\n", b"NIL", b"12 ", b"abc", b" ", b"\x00", b"\xff"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(RESPONSE_BITS, max_size=40), st.integers(min_value=1, max_value=7))
def test_reader_raises_only_protocol_or_connection_errors(bits: list[bytes], size: int) -> None:
    data = b"".join(bits)
    reader = ResponseReader(ChunkSocket(data, [size]), max_literal=1000)
    try:
        for _ in range(50):
            reader.read()
    except (ImapProtocolError, RemoteTemporaryError):
        pass
