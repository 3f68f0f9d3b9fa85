"""Request and response shapes shared by the blueprints (pydantic, strict on input)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# RFC 5321 §4.5.3.1: 64 octets local part + "@" + 255 domain; 320 is the usual bound.
MAX_EMAIL_LENGTH = 320
# Pages larger than this cost more to render than they save in round trips.
MAX_PAGE_SIZE = 500


def _email(value: str) -> str:
    try:
        # No DNS (deliverability is the mail server's business); `test_environment` admits
        # the reserved `.test` names used by test and staging mail servers.
        checked = validate_email(
            value,
            check_deliverability=False,
            globally_deliverable=False,
            allow_smtputf8=True,
            test_environment=True,
        )
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return str(checked.normalized)


EmailAddress = Annotated[
    str, Field(min_length=3, max_length=MAX_EMAIL_LENGTH), AfterValidator(_email)
]


# JSON has no UUID type: strict models still parse them from their string form.
JsonUUID = Annotated[uuid.UUID, Field(strict=False)]


class StrictInput(BaseModel):
    """Base of JSON bodies: exact types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class QueryInput(BaseModel):
    """Base of query strings: values arrive as text, so lax coercion; unknown keys refused."""

    model_config = ConfigDict(extra="forbid")


class PageQuery(QueryInput):
    """Keyset paging parameters."""

    limit: int = Field(100, ge=1, le=MAX_PAGE_SIZE, description="items per page")
    cursor: str | None = Field(None, max_length=512, description="next_cursor of the previous page")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
