"""The ``Prefer`` request header (RFC 7240): what a client would like, never an error.

Only ``wait`` (§4.3) is read. A preference the server does not understand, or a
malformed one, is ignored (§2: "MUST ignore those tokens and continue processing"), and
of one given twice the first counts (§2).
"""

from __future__ import annotations

from flask import request


def preferences() -> dict[str, str]:
    """The request's preferences, lowercased names, unquoted values ("" for none)."""
    found: dict[str, str] = {}
    for header in request.headers.getlist("Prefer"):
        for item in header.split(","):
            name, _, value = item.split(";", 1)[0].partition("=")
            name = name.strip().lower()
            if name and name not in found:
                found[name] = value.strip().strip('"')
    return found


def wait_seconds(limit: int) -> int | None:
    """``wait=N`` (delta-seconds) capped at ``limit``; None if absent, zero or malformed."""
    value = preferences().get("wait", "").lstrip("0")
    if not value.isascii() or not value.isdigit():  # "" too: absent, or zero
        return None
    return limit if len(value) > len(str(limit)) else min(int(value), limit)
