"""JSON request bodies: parsed only when needed, after the rate limits and the token check.

A body is parsed once, by the first caller of ``request.get_json`` (the ``check_body``
hook, registered after authentication, or a view's input schema); the result is cached
for the request. Before parsing, nesting deeper than :data:`MAX_JSON_DEPTH` is refused,
so a 10,000-deep body never reaches the recursive decoder; every failure (bad UTF-8,
syntax, nesting, an integer over Python's 4,300-digit limit) is a 400 ``bad_request``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Request, request
from flask.json.provider import DefaultJSONProvider

from email_service.errors import BadRequestError

# Deeper than any body of the API (about 4 levels) by far, far below the decoder's recursion.
MAX_JSON_DEPTH = 64
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# A JSON string (escapes included), written so the engine does not backtrack per character.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class NestingError(ValueError):
    """A JSON document nested deeper than :data:`MAX_JSON_DEPTH`."""


def nesting_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """The deepest array/object nesting of ``data``, counted up to ``limit + 1``."""
    if data.count(b"[") + data.count(b"{") <= limit:  # cannot be deeper: skip the scan
        return min(limit, data.count(b"[") + data.count(b"{"))
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b"", data)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            break
    return deepest


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing deep nesting before the decoder sees it."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse ``s``; raise ValueError (a 400 through the request) for anything bad."""
        data = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s
        if nesting_depth(data) > MAX_JSON_DEPTH:
            raise NestingError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(data, **kwargs)
        except RecursionError:  # a limit above the interpreter's; never a 500
            raise NestingError("JSON nested too deeply") from None


class ApiRequest(Request):
    """A request whose JSON failures are 400 problems naming the cause."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        """Raise BadRequestError instead of werkzeug's bare 400."""
        if isinstance(e, UnicodeDecodeError):
            raise BadRequestError("request body is not UTF-8", field="(body)") from None
        if isinstance(e, json.JSONDecodeError):
            raise BadRequestError(
                f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", field="(body)"
            ) from None
        if isinstance(e, NestingError):
            raise BadRequestError(str(e), field="(body)") from None
        if e is not None:  # e.g. an integer over the 4,300-digit conversion limit
            raise BadRequestError(f"JSON body refused: {e}", field="(body)") from None
        raise BadRequestError(
            "request body must be JSON (Content-Type: application/json)", field="(body)"
        )


def check_body() -> None:
    """before_request hook, after the limits and the token: refuse malformed JSON bodies."""
    if request.method in BODY_METHODS and request.is_json and request.content_length:
        request.get_json()
