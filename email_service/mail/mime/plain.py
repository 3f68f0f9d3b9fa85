"""The common outgoing message written directly: one ``text/plain`` part, every header
field ASCII on one line.

``build.build_message`` asks here first and falls back to the email package for anything
else (HTML, attachments, a forwarded original, non-ASCII or quoted names, encoded words,
fields that need folding). What is written here is byte for byte what the email package
(``EmailMessage``, ``policy.default`` with CRLF) writes for the same message, without its
header parser: the header values allowed here are those the package writes unchanged
(tests/unit/mail/test_plain_mime.py compares both on generated messages).
"""

from __future__ import annotations

import re
from email import quoprimime

# RFC 5322 §3.2.3 atext: a display name of atoms (single spaces between) is written as it
# is; anything else (specials such as "." or ",", quotes, runs of spaces) is quoted or
# encoded by the email package, so it goes there.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
SIMPLE_NAME = re.compile(rf"{_ATEXT}+( {_ATEXT}+)*")
# A dot-atom local part (RFC 5322 §3.4.1) and an ASCII domain: written unquoted.
SIMPLE_LOCAL = re.compile(rf"{_ATEXT}+(\.{_ATEXT}+)*")
SIMPLE_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
# Unstructured text (the subject): printable ASCII words, single spaces between.
SIMPLE_TEXT = re.compile(r"[!-~]+( [!-~]+)*")
# RFC 5322 §2.1.1: the email package folds a line longer than this (policy.max_line_length).
MAX_LINE = 78
# The body's line ends as the email package splits them (bytes.splitlines of ASCII).
_LINE_ENDS = re.compile(r"\r\n|\r|\n")


def address(name: str, local: str, domain: str) -> str | None:
    """``Name <local@domain>`` (or the bare address) as written, or None if not simple."""
    if not (SIMPLE_LOCAL.fullmatch(local) and SIMPLE_DOMAIN.fullmatch(domain)):
        return None
    spec = f"{local}@{domain}"
    if not name:
        return spec
    if "=?" in name or not SIMPLE_NAME.fullmatch(name):
        return None
    return f"{name} <{spec}>"


def text_field(value: str) -> str | None:
    """An unstructured value (RFC 5322 §3.2.5) as written, or None if not simple."""
    if "=?" in value or not SIMPLE_TEXT.fullmatch(value):
        return None
    return value


def message(fields: list[tuple[str, str]], text: str, cte: str | None) -> bytes | None:
    """The whole message with CRLF line ends, or None where the email package is needed.

    ``cte`` is what ``build`` asks of ``set_content``: None (7bit when every line fits in
    78 characters, else the package's choice, which is left to it) or quoted-printable.
    """
    lines = _LINE_ENDS.split(text)
    if lines[-1] == "":  # a final line end ends the last line, as in splitlines()
        lines.pop()
    if cte is None:
        if not text.isascii() or any(len(line) > MAX_LINE for line in lines):
            return None
        cte, body = "7bit", "\r\n".join(lines) + "\r\n"
    elif cte == "quoted-printable":
        raw = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
        body = quoprimime.body_encode(raw.decode("latin-1"), MAX_LINE).replace("\n", "\r\n")
    else:
        return None
    head = [f"{name}: {value}" for name, value in fields]
    head += [
        'Content-Type: text/plain; charset="utf-8"',
        f"Content-Transfer-Encoding: {cte}",
        "MIME-Version: 1.0",
    ]
    if any(len(line) > MAX_LINE for line in head):
        return None
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode("ascii")
