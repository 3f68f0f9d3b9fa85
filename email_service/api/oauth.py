"""OAuth2 mailboxes: authorization by code + PKCE, the callback, and tokens brought along.

``GET /api/oauth/callback`` is where the provider sends the user's browser back, without
our API token: the single-use state names the tenant. When the caller does send a token
(a front end forwarding the redirect), its tenant and subject must be the state's.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from apiflask import APIBlueprint
from flask import g
from pydantic import BaseModel, Field

from email_service.api.accounts import AccountOut
from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.schemas import QueryInput, StrictInput
from email_service.api.oauth_schemas import OAuthTokens
from email_service.services.accounts import AccountRecord
from email_service.services.oauth import credentials, onboarding

bp = APIBlueprint("oauth", __name__, url_prefix="/api", tag="OAuth2")

CALLBACK_PATH = "/api/oauth/callback"


class AuthorizeIn(StrictInput):
    """Optional hints for the provider's sign-in page."""

    login_hint: Annotated[str, Field(max_length=320)] | None = None


class AuthorizeOut(BaseModel):
    """Send the user to ``authorization_url``; its answer is accepted until ``expires_at``."""

    authorization_url: str
    expires_at: datetime


class CallbackQuery(QueryInput):
    """What the provider appends to the redirect URL (RFC 6749 §4.1.2)."""

    model_config = {"extra": "ignore"}

    state: str | None = Field(None, max_length=512)
    code: str | None = Field(None, max_length=4096)
    error: str | None = Field(None, max_length=200)
    error_description: str | None = Field(None, max_length=1000)


class CheckOut(BaseModel):
    """One server's login check."""

    ok: bool
    detail: str


class CallbackOut(BaseModel):
    """The account that was created or renewed, its login checks and its first sync."""

    account: AccountOut
    created: bool
    imap: CheckOut
    smtp: CheckOut
    sync_job_id: str | None


@bp.put("/accounts/<uuid:account_id>/oauth")
@bp.input(OAuthTokens, arg_name="body")
@bp.output(AccountOut)
@bp.doc(responses=[404, 422])
def replace_tokens(account_id: uuid.UUID, body: OAuthTokens) -> AccountRecord:
    """Replace the account's OAuth2 tokens (they are encrypted and never returned)."""
    rt = runtime()
    credentials.check_provider(rt.settings, body.provider)
    tokens = credentials.token_set(
        body.access_token, body.refresh_token, body.expires_at, body.expires_in
    )
    with rt.db.session() as session:
        return credentials.replace_tokens(
            session, tenant_id(), account_id, tokens, body.provider, rt.vault
        )


@bp.post("/oauth/<provider>/authorize")
@bp.input(AuthorizeIn, arg_name="body")
@bp.output(AuthorizeOut)
@bp.doc(responses=[404, 503])
def authorize(provider: str, body: AuthorizeIn) -> AuthorizeOut:
    """Start adding a mailbox: the URL of the provider's consent page (PKCE S256)."""
    result = onboarding.authorize(
        runtime(), tenant_id(), g.principal.subject, provider, body.login_hint
    )
    return AuthorizeOut(authorization_url=result.authorization_url, expires_at=result.expires_at)


@bp.get("/oauth/callback")
@bp.input(CallbackQuery, location="query", arg_name="query")
@bp.output(CallbackOut)
@bp.doc(responses=[400, 503])
def callback(query: CallbackQuery) -> CallbackOut:
    """The provider's redirect: exchange the code, create or renew the account, sync it."""
    caller = None
    if "principal" in g:
        caller = (tenant_id(), g.principal.subject)
    params = {k: v for k, v in query.model_dump().items() if v is not None}
    done = onboarding.callback(runtime(), params, caller)
    return CallbackOut(
        account=AccountOut.model_validate(done.account),
        created=done.created,
        imap=CheckOut(ok=done.checks["imap"].ok, detail=done.checks["imap"].detail),
        smtp=CheckOut(ok=done.checks["smtp"].ok, detail=done.checks["smtp"].detail),
        sync_job_id=done.sync_job_id,
    )
