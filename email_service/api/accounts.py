"""/api/accounts: register and manage mailboxes (five routes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from apiflask import APIBlueprint
from flask import Response, url_for
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.responses import built_json
from email_service.api.http.schemas import EmailAddress, PageQuery, StrictInput
from email_service.api.oauth_schemas import OAuthTokens, oauth_fields
from email_service.api.outgoing.compose_schemas import OneLine
from email_service.config import Security
from email_service.services import accounts, verify
from email_service.services.accounts import AccountFields, AccountRecord
from email_service.services.lifecycle import deletion
from email_service.services.sync import schedule as sync_jobs
from email_service.store.states import AccountStatus

bp = APIBlueprint("accounts", __name__, url_prefix="/api/accounts", tag="Accounts")

Host = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9._:\[\]-]+$",
        description="host name or IP address of the mail server",
    ),
]
Port = Annotated[int, Field(ge=1, le=65535)]
Password = Annotated[str, Field(min_length=1, max_length=1024, description="never returned")]
Name = Annotated[str, OneLine, Field(max_length=200)]  # the From header's display name
Username = Annotated[str, Field(min_length=1, max_length=320)]
Status = Literal["active", "disabled"]
# Literal, not the Security enum: strict validation of a JSON string into an enum fails.
SecurityName = Literal["ssl", "starttls", "none"]


class AccountCreate(StrictInput):
    """A new mailbox; servers default to the operator's IMAP_*/SMTP_* settings.

    Either ``password`` or ``oauth`` (tokens the application obtained; docs/oauth2.md).
    """

    email: EmailAddress
    oauth: OAuthTokens | None = None
    password: Password | None = Field(None, validate_default=True)
    display_name: Name | None = None
    username: Username | None = Field(None, description="login name; defaults to email")
    imap_host: Host | None = None
    imap_port: Port | None = None
    imap_security: SecurityName | None = None
    smtp_host: Host | None = None
    smtp_port: Port | None = None
    smtp_security: SecurityName | None = None

    @field_validator("password")
    @classmethod
    def _one_credential(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (value is None) == (info.data.get("oauth") is None):
            raise ValueError("give either password or oauth")
        return value


class AccountUpdate(StrictInput):
    """Fields to change; absent fields keep their value."""

    email: EmailAddress | None = None
    password: Password | None = None
    display_name: Name | None = None
    username: Username | None = None
    imap_host: Host | None = None
    imap_port: Port | None = None
    imap_security: SecurityName | None = None
    smtp_host: Host | None = None
    smtp_port: Port | None = None
    smtp_security: SecurityName | None = None
    status: Status | None = None


class AccountOut(BaseModel):
    """An account as stored; the password is never part of it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: str
    email: str
    display_name: str | None
    username: str
    imap_host: str
    imap_port: int
    imap_security: Security
    smtp_host: str
    smtp_port: int
    smtp_security: Security
    status: AccountStatus
    created_at: datetime
    updated_at: datetime
    auth_kind: Literal["password", "oauth2"]
    auth_error: str | None = Field(None, description="why the server last refused the login")


class AccountPage(BaseModel):
    """A page of accounts."""

    items: list[AccountOut]
    next_cursor: str | None


def _fields(body: BaseModel) -> AccountFields:
    values = body.model_dump(exclude_unset=True)
    for key in ("imap_security", "smtp_security"):
        if values.get(key) is not None:
            values[key] = Security(values[key])
    values.pop("oauth", None)
    return AccountFields(**values)


@bp.get("")
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(AccountPage)
def list_accounts(query: PageQuery) -> Response:
    """List this tenant's accounts."""
    with runtime().db.rows() as conn:
        page = accounts.list_accounts(conn, tenant_id(), query.limit, query.cursor)
    # AccountRecord has AccountOut's fields, in its order (tests/unit/test_built_json.py)
    return built_json({"items": page.items, "next_cursor": page.next_cursor})


@bp.post("")
@bp.input(AccountCreate, arg_name="body")
@bp.output(AccountOut, status_code=201)
@bp.doc(responses=[400, 409, 422])
def create_account(body: AccountCreate) -> tuple[AccountRecord, int, dict[str, str]]:
    """Register a mailbox and start its first sync (newest mail first; SYNC_ON_CREATE).

    The password is encrypted at rest and never returned.
    """
    rt = runtime()
    data = _fields(body)
    if body.oauth is not None:
        data = oauth_fields(rt.settings, data, body.oauth)
    with rt.db.session() as session:
        record = accounts.create_account(session, tenant_id(), data, rt.vault, rt.hosts)
    sync_jobs.first_sync(rt, tenant_id(), record.id)  # after the commit
    location = url_for(".get_account", account_id=record.id)
    return record, 201, {"Location": location}


@bp.get("/<uuid:account_id>")
@bp.output(AccountOut)
@bp.doc(responses=[404])
def get_account(account_id: uuid.UUID) -> AccountRecord:
    """One account."""
    with runtime().db.reading() as session:
        return accounts.get_account(session, tenant_id(), account_id)


@bp.put("/<uuid:account_id>")
@bp.input(AccountUpdate, arg_name="body")
@bp.output(AccountOut)
@bp.doc(responses=[400, 404, 409, 422])
def update_account(account_id: uuid.UUID, body: AccountUpdate) -> AccountRecord:
    """Change an account's fields (only those given)."""
    rt = runtime()
    with rt.db.session() as session:
        return accounts.update_account(
            session, tenant_id(), account_id, _fields(body), rt.vault, rt.hosts
        )


@bp.delete("/<uuid:account_id>")
@bp.output({}, status_code=204)
@bp.doc(responses=[404])
def delete_account(account_id: uuid.UUID) -> tuple[str, int]:
    """Remove an account and everything stored for it."""
    deletion.delete_account(runtime(), tenant_id(), account_id)  # blobs: by the sweeper
    return "", 204


class CheckOut(BaseModel):
    """One server's login check."""

    ok: bool
    detail: str


class VerifyOut(BaseModel):
    """What worked: IMAP and SMTP logins."""

    imap: CheckOut
    smtp: CheckOut


@bp.post("/<uuid:account_id>/verify")
@bp.output(VerifyOut)
@bp.doc(responses=[404])
def verify_account(account_id: uuid.UUID) -> VerifyOut:
    """Log in to the account's IMAP and SMTP servers now and report what worked."""
    result = verify.verify_account(runtime(), tenant_id(), account_id)
    return VerifyOut(
        imap=CheckOut(ok=result["imap"].ok, detail=result["imap"].detail),
        smtp=CheckOut(ok=result["smtp"].ok, detail=result["smtp"].detail),
    )
