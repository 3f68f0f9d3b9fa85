"""Who authorized: the mailbox address from the OIDC id_token, or from the userinfo endpoint.

The id_token is verified (OIDC Core §3.1.3.7): signature against the provider's JWKS,
``aud`` = our client id, ``iss`` when the provider has one fixed issuer, ``exp``, and the
``nonce`` we sent. joserfc does the JOSE work.
"""

from __future__ import annotations

from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from email_service.errors import RemoteTemporaryError, ValidationError
from email_service.services.oauth.providers import HTTP_TIMEOUT, Provider

# Algorithms accepted for id_tokens (OIDC Core §15.1 requires RS256 support; no "none").
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
# Seconds of clock skew tolerated on exp/iat.
LEEWAY = 60
# Claims that name the mailbox, in order of preference (Microsoft: preferred_username).
ADDRESS_CLAIMS = ("email", "preferred_username", "upn")


class IdentityError(ValidationError):
    """The provider's answer does not say (verifiably) which mailbox was authorized."""

    code = "oauth_identity_invalid"


def mailbox_address(provider: Provider, token: dict[str, Any], nonce: str) -> str:
    """The authorized mailbox's address."""
    claims: dict[str, Any] = {}
    if token.get("id_token") and provider.jwks_uri:
        claims = verify_id_token(provider, str(token["id_token"]), nonce)
    address = _address(claims)
    if address is None and provider.userinfo_endpoint:
        address = _address(_userinfo(provider, str(token["access_token"])))
    if address is None:
        raise IdentityError("the provider did not tell the mailbox address (email claim)")
    return address


def verify_id_token(provider: Provider, id_token: str, nonce: str) -> dict[str, Any]:
    """The id_token's claims, after checking signature, audience, issuer, expiry and nonce."""
    keys = KeySet.import_key_set(_get_json(provider.jwks_uri or "", None))  # type: ignore[arg-type]
    options: dict[str, Any] = {
        "aud": {"essential": True, "value": provider.client_id},
        "exp": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }
    if provider.issuer:
        options["iss"] = {"essential": True, "value": provider.issuer}
    try:
        decoded = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
        jwt.JWTClaimsRegistry(leeway=LEEWAY, **options).validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise IdentityError(f"the id_token is not valid: {type(exc).__name__}") from None
    return dict(decoded.claims)


def _address(claims: dict[str, Any]) -> str | None:
    if claims.get("email_verified") is False:
        return None
    for name in ADDRESS_CLAIMS:
        value = claims.get(name)
        if isinstance(value, str) and "@" in value:
            return value.strip().lower()
    return None


def _userinfo(provider: Provider, access_token: str) -> dict[str, Any]:
    return _get_json(provider.userinfo_endpoint or "", access_token)


def _get_json(url: str, bearer: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    try:
        response = requests.get(url, headers=headers, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise RemoteTemporaryError(f"OAuth2 provider call failed: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise IdentityError("the provider answered something other than a JSON object")
    return data
