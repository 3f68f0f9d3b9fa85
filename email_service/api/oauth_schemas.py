"""OAuth2 tokens in request bodies (``"oauth"`` of POST /api/accounts, PUT .../oauth)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from email_service.api.http.schemas import StrictInput
from email_service.config import Settings
from email_service.services.accounts import AccountFields
from email_service.services.oauth import credentials

ProviderName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Secret = Annotated[str, Field(min_length=1, max_length=8192, description="never returned")]


class OAuthTokens(StrictInput):
    """Tokens an application obtained itself; the refresh token lets us renew them."""

    access_token: Secret
    refresh_token: Secret | None = None
    expires_at: int | None = Field(None, ge=0, description="unix time the access token expires")
    expires_in: int | None = Field(None, ge=0, description="or: seconds it stays valid")
    provider: ProviderName | None = Field(
        None, description="configured provider that refreshes the tokens"
    )


def oauth_fields(settings: Settings, data: AccountFields, body: OAuthTokens) -> AccountFields:
    """The account's fields with the tokens, and the provider's servers where none given."""
    provider = credentials.check_provider(settings, body.provider)
    tokens = credentials.token_set(
        body.access_token, body.refresh_token, body.expires_at, body.expires_in
    )
    data = credentials.with_provider_servers(data, provider)
    return credentials.replace_fields(data, tokens, body.provider)
