"""Hostile messages: MIME bombs, broken charsets and encodings, XSS vectors as mail.

Every message carries a unique Message-ID and a marker in its subject, so a test can find
it again among what the sync stored.
"""

from __future__ import annotations

import base64
import itertools
import sysconfig
from collections.abc import Iterator
from pathlib import Path

CPYTHON_DATA = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
CRLF = b"\r\n"


def _head(name: str, extra: bytes = b"") -> bytes:
    return (
        b"From: Bomb <bomb@example.org>\r\nTo: victim@example.test\r\n"
        b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
        + b"Message-ID: <%s@bombs.example>\r\n" % name.encode()
        + b"Subject: bomb %s\r\n" % name.encode()
        + extra
    )


def nested_multiparts(depth: int = 2000) -> bytes:
    """Multiparts nested ``depth`` levels deep, a text part at the bottom."""
    open_ = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(depth)
    )
    close = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(depth)))
    return _head("nested-multipart") + open_ + b"Content-Type: text/plain\r\n\r\ndeep" + close


def nested_rfc822(depth: int = 2000) -> bytes:
    """message/rfc822 inside message/rfc822, ``depth`` times."""
    layer = b"Subject: layer\r\nContent-Type: message/rfc822\r\n\r\n"
    return (
        _head("nested-rfc822", b"Content-Type: message/rfc822\r\n")
        + CRLF
        + layer * depth
        + (b"Subject: bottom\r\n\r\nbottom text\r\n")
    )


def many_parts(count: int = 50_000) -> bytes:
    """One multipart with ``count`` tiny text parts."""
    part = b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n"
    parts = b"".join(part % i for i in range(count))
    head = _head("many-parts", b'Content-Type: multipart/mixed; boundary="p"\r\n')
    return head + CRLF + parts + b"--p--\r\n"


def huge_subject(size: int = 400 * 1024) -> bytes:
    """A 400 KB Subject on one line (RFC 5322 allows 998 octets)."""
    marker = b"Subject: bomb huge-subject"
    return _head("huge-subject").replace(marker, marker + b" " + b"S" * size) + b"\r\nbody\r\n"


def many_recipients(count: int = 5000) -> bytes:
    """A To: field with ``count`` addresses, folded."""
    addrs = b",\r\n ".join(b'"R %d" <r%d@example.org>' % (i, i) for i in range(count))
    raw = _head("many-recipients").replace(b"To: victim@example.test", b"To: " + addrs)
    return raw + b"\r\nhello all\r\n"


def long_line(size: int = 50 * 1024 * 1024) -> bytes:
    """A 50 MB body on a single line."""
    return _head("long-line") + CRLF + b"x" * size + CRLF


# What issue 7 names -> (the marker in its Message-ID and Subject, its builder).
BOMBS = {
    "2,000-deep nested multiparts": ("nested-multipart", nested_multiparts),
    "2,000-deep message/rfc822": ("nested-rfc822", nested_rfc822),
    "50,000 parts": ("many-parts", many_parts),
    "400 KB subject": ("huge-subject", huge_subject),
    "5,000 recipients": ("many-recipients", many_recipients),
    "50 MB single line": ("long-line", long_line),
}


def cpython_messages() -> list[bytes]:
    """CPython's test_email corpus (empty when the test package is not installed)."""
    if not CPYTHON_DATA.is_dir():
        return []
    return [p.read_bytes() for p in sorted(CPYTHON_DATA.glob("msg_*.txt"))]


# Charsets a client may meet: real, misspelt, unknown, dangerous (UTF-7, UTF-16), empty.
CHARSETS = [
    "utf-8", "UTF8", "iso-8859-1", "latin1", "windows-1252", "koi8-r", "shift_jis",
    "iso-2022-jp", "gb2312", "big5", "euc-kr", "utf-7", "utf-16", "utf-32", "x-unknown",
    "unicode-1-1-utf-7", "", "utf-8\"; x=\"", "ascii", "us-ascii", "cp1255", "bogus-8859-99",
]  # fmt: skip
# Bodies that do not match what their headers claim.
PAYLOADS = [
    "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001f600".encode(),
    "caf\u00e9".encode("latin-1"),
    b"\xff\xfe\x00\xd8\x00",  # a lone surrogate in UTF-16
    b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc",  # invalid UTF-8 sequences
    b"+ZeVnLIqe-",  # UTF-7
    b"\x1b$B$3$s$K$A$O\x1b(B",  # ISO-2022-JP
    b"plain ascii",
]
ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus"]
# Header words that break RFC 2047 in every way we know.
BROKEN_WORDS = [
    b"=?utf-8?q?caf=C3=A9?=",
    b"=?x-unknown?q?abc?=",
    b"=?utf-8?b?!!!notbase64?=",
    b"=?utf-8?b?w6k?=",  # missing padding
    b"=?utf-8?x?abc?=",  # unknown encoding letter
    b"=?utf-8?q?=FF=FE=00?=",
    b"=?utf-7?q?+ZeVnLIqe-?=",
    b"=?iso-8859-1*fr?q?=E9t=E9?=",  # RFC 2231 language
    b"=?utf-8?q?a=0D=0AX-Injected:_1?=",  # CRLF inside a word
    b"=?=?utf-8?q?nested?=?=",
    b"\xe6\x97\xa5\xe6\x9c\xac raw 8-bit",
    b"\xff\xfe raw invalid",
    b"=?utf-8?q?" + b"A" * 2000 + b"?=",
]


def _encode(payload: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.encodebytes(payload)
    if encoding == "quoted-printable":
        return b"".join(b"=%02X" % b if b > 126 or b in b"=" else bytes([b]) for b in payload)
    return payload


def broken_charsets() -> Iterator[bytes]:
    """Messages whose charsets, transfer encodings and encoded words are wrong or unknown."""
    combos = itertools.product(CHARSETS, PAYLOADS, ENCODINGS)
    for n, (charset, payload, encoding) in enumerate(combos):
        if n % 7:  # a spread of 1 in 7 of the 1,078 combinations keeps the batch quick
            continue
        word = BROKEN_WORDS[n % len(BROKEN_WORDS)]
        subtype = b"html" if n % 2 else b"plain"
        yield (
            b"From: " + word + b" <s%d@example.org>\r\n" % n
            + b"To: " + word + b" <t@example.test>\r\n"
            + b"Subject: charset %d " % n + word + CRLF
            + b"Message-ID: <cs%d@broken.example>\r\n" % n
            + b"MIME-Version: 1.0\r\n"
            + b'Content-Type: text/%s; charset="%s"\r\n' % (subtype, charset.encode())
            + b"Content-Transfer-Encoding: %s\r\n\r\n" % encoding.encode()
            + _encode(payload, encoding) + CRLF
        )  # fmt: skip
    for n, word in enumerate(BROKEN_WORDS):  # broken parameters and structure too
        yield (
            b"From: x@example.org\r\nSubject: param %d\r\n" % n
            + b"Message-ID: <bp%d@broken.example>\r\n" % n
            + b"Content-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\n"
            + b"Content-Type: application/octet-stream; name*=x-unknown''%FF%FE; name=" + word
            + b"\r\nContent-Disposition: attachment; filename*0*=utf-8''a%E9; filename*1=b\r\n"
            + b"Content-Transfer-Encoding: base64\r\n\r\n@@@not base64@@@\r\n--q\r\n"
            + b"Content-Type: text/plain; charset=utf-8; charset=latin1\r\n\r\n\xe9\xff\r\n"
            + (b"--q--\r\n" if n % 2 else b"")  # every other one never ends
        )  # fmt: skip
