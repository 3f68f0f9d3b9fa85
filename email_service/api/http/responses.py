"""JSON answers written by pydantic-core in one pass: the list routes' fast path.

APIFlask's ``@output`` validates each item into a model, dumps every model back to Python
values and hands them to Flask's ``json.dumps``: three walks over a page, two of them in
Python. :func:`json_response` validates the whole page against the same model (the route
keeps ``@output`` for its OpenAPI document; a ``Response`` passes through it untouched)
and serializes it in Rust, as ``model_dump(mode="json")`` would, in one call each.

:func:`built_json` skips the validation too, for pages the server built itself from its
own rows in the model's shape (the same field names in the same order, values of the
field types: dataclass records, or dicts written in field order). pydantic-core writes
them as the model's serializer would (UUIDs and enums as strings, datetimes as ISO 8601
with ``Z``); tests/unit/test_built_json.py compares the bytes with :func:`json_response`'s.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from flask import Response
from pydantic import BaseModel

MIMETYPE = "application/json"


def json_response(model: type[BaseModel], data: Any, status: int = 200) -> Response:
    """``data`` (a dict, or objects with the fields as attributes) validated as ``model``."""
    body = model.model_validate(data, from_attributes=True).model_dump_json(by_alias=True)
    return Response(body, status=status, mimetype=MIMETYPE)


def built_json(data: Any, status: int = 200) -> Response:
    """``data``, built by the server in its response model's shape, written as JSON."""
    return Response(pydantic_core.to_json(data), status=status, mimetype=MIMETYPE)
