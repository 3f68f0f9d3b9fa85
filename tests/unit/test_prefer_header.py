"""The Prefer header (RFC 7240): ``wait`` read as delta-seconds, anything else ignored."""

from __future__ import annotations

import pytest
from flask import Flask

from email_service.api.http import prefer

LIMIT = 30


def _wait(*fields: str) -> int | None:
    app = Flask(__name__)
    with app.test_request_context(headers=[("Prefer", f) for f in fields]):
        return prefer.wait_seconds(LIMIT)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ((), None),
        (("wait=5",), 5),
        (("respond-async, wait=7",), 7),
        (('WAIT = "9"',), 9),
        (("wait=4; x=y",), 4),
        (("wait=3", "wait=8"), 3),  # §2: the first of a preference given twice counts
        (("wait=3, wait=8",), 3),
        (("wait=31",), LIMIT),
        (("wait=" + "9" * 5000,), LIMIT),  # more digits than int() takes by default
        (("wait=0",), None),
        (("wait=000",), None),
        (("wait=",), None),
        (("wait",), None),
        (("wait=soon",), None),
        (("wait=-3",), None),
        (("wait=1.5",), None),
        (("wait=\u00b2",), None),  # a digit to str.isdigit, not to HTTP
        (("respond-async",), None),
    ],
)
def test_wait_seconds(fields: tuple[str, ...], expected: int | None) -> None:
    assert _wait(*fields) == expected
