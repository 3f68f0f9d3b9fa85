"""The list routes write pages they built without validating them again (``built_json``):
the bytes must be those of the validated model's JSON, field for field."""

from __future__ import annotations

import dataclasses
import uuid
from collections import namedtuple
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask

from email_service.api.accounts import AccountOut, AccountPage
from email_service.api.http.responses import built_json, json_response
from email_service.api.messages import MessagePage, MessageSummary
from email_service.config import Security
from email_service.services.accounts import AccountRecord
from email_service.services.messages import summary_view
from email_service.store.states import AccountStatus

WHEN = datetime(2026, 12, 7, 21, 16, 46, 123456, tzinfo=UTC)
ON_THE_SECOND = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _record(n: int, **changes: Any) -> AccountRecord:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": "tenant-a",
        "email": f"user{n}@example.test",
        "display_name": None,
        "username": f"user{n}@example.test",
        "imap_host": "imap.example.test",
        "imap_port": 993,
        "imap_security": "ssl",
        "smtp_host": "smtp.example.test",
        "smtp_port": 465,
        "smtp_security": "ssl",
        "status": "active",
        "created_at": WHEN,
        "updated_at": ON_THE_SECOND,
        "auth_kind": "password",
        "auth_error": None,
    }
    return AccountRecord(**{**values, **changes})


def _bodies(model: Any, data: dict[str, Any]) -> tuple[bytes, bytes]:
    with Flask(__name__).app_context():
        return built_json(data).get_data(), json_response(model, data).get_data()


def test_account_record_has_the_output_fields_in_order() -> None:
    names = [f.name for f in dataclasses.fields(AccountRecord)]
    assert names == list(AccountOut.model_fields)


def test_account_page_bytes_are_the_models() -> None:
    items = [
        _record(1),
        _record(2, display_name='Zoë «Ex» "quoted"', auth_kind="oauth2", auth_error="denied"),
        _record(3, imap_security=Security.STARTTLS, status=AccountStatus.AUTH_FAILED),
        _record(4, smtp_security="none", status="disabled", updated_at=WHEN.replace(year=2027)),
    ]
    for cursor in (None, "MjAyNnwx"):
        built, validated = _bodies(AccountPage, {"items": items, "next_cursor": cursor})
        assert built == validated


Row = namedtuple(  # a stand-in for a Reader row
    "Row",
    "id account_id folder_id thread_id subject from_name from_email to_addrs received_date "
    "sent_at flags seen flagged answered has_attachments snippet size",
)


def _row(n: int, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "account_id": uuid.uuid4(),
        "folder_id": uuid.uuid4(),
        "thread_id": f"t{n}",
        "subject": "Rich message ✓ </script>",
        "from_name": "Zoë Example",
        "from_email": "zoe@example.org",
        "to_addrs": [{"name": "Alice", "email": "a@example.test"}, {"name": "", "email": "b@x"}],
        "received_date": WHEN,
        "sent_at": ON_THE_SECOND,
        "flags": ["\\Seen", "$Label1"],
        "seen": True,
        "flagged": False,
        "answered": False,
        "has_attachments": True,
        "snippet": "line one\nline two \u2028 \U0001f600",
        "size": 12345,
    }
    return Row(**{**values, **changes})


def test_summary_view_has_the_output_fields_in_order() -> None:
    assert list(summary_view(_row(1))) == list(MessageSummary.model_fields)


@pytest.mark.parametrize("cursor", [None, "2026-12-07T21:16:46.123456+00:00|abc"])
def test_message_page_bytes_are_the_models(cursor: str | None) -> None:
    rows = [
        _row(1),
        _row(2, from_name=None, thread_id=None, sent_at=None, flags=[], to_addrs=[]),
        _row(3, from_email=None, from_name=None, seen=False, size=0),
    ]
    data = {"items": [summary_view(r) for r in rows], "next_cursor": cursor}
    built, validated = _bodies(MessagePage, data)
    assert built == validated


def test_a_record_of_a_row_is_the_record_of_its_fields() -> None:
    record = _record(1, display_name="Ann")
    row = dataclasses.astuple(record)
    built = AccountRecord.of_row(row)
    assert built == AccountRecord(*row) and hash(built) == hash(record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.email = "other@example.test"  # type: ignore[misc]
    with pytest.raises(ValueError):
        AccountRecord.of_row(row[:-1])  # a column short: never a record with a field unset
