"""/api/accounts: register and manage mailboxes (five routes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from apiflask import APIBlueprint
from flask import url_for
from pydantic import BaseModel, ConfigDict, Field

from email_service.api.context import runtime, tenant_id
from email_service.api.schemas import EmailAddress, PageQuery, StrictInput
from email_service.config import Security
from email_service.services import accounts, verify
from email_service.services.accounts import AccountFields, AccountRecord
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
Name = Annotated[str, Field(max_length=200)]
Username = Annotated[str, Field(min_length=1, max_length=320)]
Status = Literal["active", "disabled"]
# Literal, not the Security enum: strict validation of a JSON string into an enum fails.
SecurityName = Literal["ssl", "starttls", "none"]


class AccountCreate(StrictInput):
    """A new mailbox; servers default to the operator's IMAP_*/SMTP_* settings."""

    email: EmailAddress
    password: Password
    display_name: Name | None = None
    username: Username | None = Field(None, description="login name; defaults to email")
    imap_host: Host | None = None
    imap_port: Port | None = None
    imap_security: SecurityName | None = None
    smtp_host: Host | None = None
    smtp_port: Port | None = None
    smtp_security: SecurityName | None = None


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


class AccountPage(BaseModel):
    """A page of accounts."""

    items: list[AccountOut]
    next_cursor: str | None


def _fields(body: BaseModel) -> AccountFields:
    values = body.model_dump(exclude_unset=True)
    for key in ("imap_security", "smtp_security"):
        if values.get(key) is not None:
            values[key] = Security(values[key])
    return AccountFields(**values)


@bp.get("")
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(AccountPage)
def list_accounts(query: PageQuery) -> AccountPage:
    """List this tenant's accounts."""
    with runtime().db.reading() as session:
        page = accounts.list_accounts(session, tenant_id(), query.limit, query.cursor)
    return AccountPage(
        items=[AccountOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )


@bp.post("")
@bp.input(AccountCreate, arg_name="body")
@bp.output(AccountOut, status_code=201)
@bp.doc(responses=[400, 409, 422])
def create_account(body: AccountCreate) -> tuple[AccountRecord, int, dict[str, str]]:
    """Register a mailbox. The password is encrypted at rest and never returned."""
    rt = runtime()
    with rt.db.session() as session:
        record = accounts.create_account(session, tenant_id(), _fields(body), rt.vault, rt.hosts)
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
    with runtime().db.session() as session:
        accounts.delete_account(session, tenant_id(), account_id)
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
