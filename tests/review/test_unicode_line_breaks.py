"""Finding 3: every character ``str.splitlines()`` breaks on is refused (400
header_injection) in every field that becomes a header, at the API, before anything is
stored: compose, drafts, display names of recipients and of accounts, attachment ids."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from flask.testing import FlaskClient

from email_service.errors import HeaderInjectionError
from email_service.services.outgoing.compose import check_text
from tests.conftest import TENANT_A, TENANT_B
from tests.support.compose_api import SPEC_BODY, add_account, running_app

Headers = Callable[[str], dict[str, str]]
# Every line boundary of str.splitlines(), beyond CR and LF.
BREAKS = {
    "VT": "\x0b",
    "FF": "\x0c",
    "FS": "\x1c",
    "GS": "\x1d",
    "RS": "\x1e",
    "NEL": "\x85",
    "LS": "\u2028",
    "PS": "\u2029",
}


def test_the_break_list_is_what_splitlines_breaks_on() -> None:
    breakers = {chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1}
    assert breakers == set(BREAKS.values()) | {"\r", "\n"}


@pytest.mark.parametrize("char", BREAKS.values(), ids=BREAKS.keys())
def test_check_text_refuses_every_line_break(char: str) -> None:
    with pytest.raises(HeaderInjectionError):
        check_text(f"Subject{char}Bcc: evil@evil.test", "subject")
    with pytest.raises(HeaderInjectionError):  # hidden in an encoded word (RFC 2047)
        encoded = base64.b64encode(f"a{char}b".encode()).decode()
        check_text(f"=?utf-8?b?{encoded}?=", "subject")


@pytest.fixture
def api(make_settings: Any) -> Iterator[FlaskClient]:
    with ExitStack() as stack:
        client, _runtime = stack.enter_context(running_app(make_settings()))
        yield client


def test_line_breaks_in_header_fields_are_400_at_the_api(
    api: FlaskClient, as_tenant: Headers
) -> None:
    headers = as_tenant(TENANT_A)
    add_account(api, headers, "alice@example.test")
    add_account(api, as_tenant(TENANT_B), "bob@example2.test")
    for char in BREAKS.values():
        _refused_everywhere(api, headers, char)
    assert api.get("/api/compose/drafts", headers=headers).get_json()["items"] == []
    assert api.get("/api/compose/drafts", headers=as_tenant(TENANT_B)).get_json()["items"] == []


def _refused_everywhere(api: FlaskClient, headers: dict[str, str], char: str) -> None:
    bodies = [
        {"subject": f"Hello{char}Bcc: evil@evil.test"},
        {"to": [{"email": "b@example.test", "name": f"Bob{char}X: y"}]},
        {"cc": [{"email": "c@example.test", "name": f"C{char}"}]},
    ]
    for body in bodies:
        for route in ("/api/compose", "/api/compose/draft"):
            answer = api.post(route, headers=headers, json={**SPEC_BODY, **body})
            assert answer.status_code == 400, (route, body, answer.get_json())
            assert answer.get_json()["code"] == "header_injection"
    account = api.post(
        "/api/accounts",
        headers=headers,
        json={"email": "carol@example.test", "password": "x", "display_name": f"Carol{char}X"},
    )
    assert account.status_code == 400, account.get_json()
    assert account.get_json()["code"] == "header_injection"
