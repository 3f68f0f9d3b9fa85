"""OAuth2 mailboxes: authorization by code + PKCE, the callback, and tokens brought along.

``GET /api/oauth/callback`` is where the provider sends the user's browser back, without
our API token: the single-use state names the tenant. When the caller does send a token
(a front end forwarding the redirect), its tenant and subject must be the state's. A flow
started with ``return_to`` (the web client) is answered with a 303 back to that path on
this service, with ``oauth_result``/``oauth_account`` or ``oauth_error`` (a code) added
to its query; others get the JSON answer. ``GET /api/oauth/providers`` lists what the
client may offer: names and labels, never a secret.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from apiflask import APIBlueprint
from flask import g, redirect
from pydantic import BaseModel, Field
from werkzeug.wrappers import Response

from email_service.api.accounts import AccountOut
from email_service.api.http.context import runtime, tenant_id
from email_service.api.http.schemas import QueryInput, StrictInput
from email_service.api.oauth_schemas import OAuthTokens
from email_service.errors import EmailServiceError
from email_service.services.accounts import AccountRecord
from email_service.services.oauth import credentials, onboarding, providers

bp = APIBlueprint("oauth", __name__, url_prefix="/api", tag="OAuth2")

CALLBACK_PATH = "/api/oauth/callback"


class AuthorizeIn(StrictInput):
    """Optional hints for the provider's sign-in page."""

    login_hint: Annotated[str, Field(max_length=320)] | None = None
    return_to: (
        Annotated[
            str,
            Field(
                max_length=200,
                pattern=onboarding.RETURN_TO_RE.pattern,
                description="a path on this service: the callback answers with a 303 back to it",
            ),
        ]
        | None
    ) = None


class AuthorizeOut(BaseModel):
    """Send the user to ``authorization_url``; its answer is accepted until ``expires_at``."""

    authorization_url: str
    expires_at: datetime


class ProviderOut(BaseModel):
    """A configured provider: its name in the routes, and a label for a button."""

    name: str
    label: str


class ProviderList(BaseModel):
    """Providers a mailbox can be added with (none while OAUTH_REDIRECT_URL is unset)."""

    items: list[ProviderOut]


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
        runtime(), tenant_id(), g.principal.subject, provider, body.login_hint, body.return_to
    )
    return AuthorizeOut(authorization_url=result.authorization_url, expires_at=result.expires_at)


@bp.get("/oauth/providers")
@bp.output(ProviderList)
def list_providers() -> ProviderList:
    """The configured OAuth2 providers (names and labels only)."""
    settings = runtime().settings
    if not settings.oauth_redirect_url:
        return ProviderList(items=[])
    found = providers.labels(settings.oauth_providers)
    return ProviderList(items=[ProviderOut(name=name, label=label) for name, label in found])


@bp.get("/oauth/callback")
@bp.input(CallbackQuery, location="query", arg_name="query")
@bp.output(CallbackOut)
@bp.doc(responses=[303, 400, 503])
def callback(query: CallbackQuery) -> CallbackOut | Response:
    """The provider's redirect: exchange the code, create or renew the account, sync it."""
    back = onboarding.return_to(query.state)
    if back is None:
        return _finish(query)
    try:
        done = _finish(query)
    except EmailServiceError as exc:  # told by code only: a crafted link cannot word it
        return redirect(_with_query(back, oauth_error=exc.code), 303)
    result = "created" if done.created else "renewed"
    return redirect(_with_query(back, oauth_result=result, oauth_account=str(done.account.id)), 303)


def _finish(query: CallbackQuery) -> CallbackOut:
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


def _with_query(path: str, **params: str) -> str:
    """``path`` with ``params`` added to its query (before any fragment)."""
    parts = urlsplit(path)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return urlunsplit(("", "", parts.path, query, parts.fragment))
