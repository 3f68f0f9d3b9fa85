"""db.jsonb_loads: the search pool's JSONB decoding gives what json.loads gives."""

from __future__ import annotations

import json

import pytest

from email_service.store.db import jsonb_loads


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '["\\\\Seen", "$Label"]',
        '[{"name": "Zoë Ünal", "email": "zoe@example.org"}]',
        '{"a": [1, 2.5, null, true, false], "b": "\\u00e9\\ud83d\\ude00"}',
        "null",
        '"text"',
        "12",
        " [1] ",  # not as PostgreSQL writes JSONB: answered all the same
        "[1] ",
        '"\\ud800"',  # a lone surrogate escape: json.loads makes a str of it
        "123456789012345678901234567890",
        "[0.1000000000000000055511151231257827, 1e400, -0, 1E5, 1.5e-320]",
        '{"a": 1, "a": 2}',
    ],
)
def test_same_value_as_json_loads(text: str) -> None:
    assert jsonb_loads(text.encode()) == json.loads(text)
    assert jsonb_loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["[1] x", "", "[1", "{'a': 1}", "[1,]", '"a\tb"'])
def test_what_json_loads_refuses_is_refused(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonb_loads(text.encode())
