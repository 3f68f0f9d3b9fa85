"""OAuth2 providers the operator configured (OAUTH_PROVIDERS), resolved against presets.

The flows themselves are Authlib's (``OAuth2Session``): the authorization URL with PKCE
S256, the code exchange and the refresh grant. Endpoints come from the preset, from the
settings, or from OIDC discovery (``<issuer>/.well-known/openid-configuration``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from email_service.config import OAuthProviderSettings, Security
from email_service.errors import (
    ConfigError,
    NotFoundError,
    RemoteAuthError,
    RemoteTemporaryError,
)
from email_service.services.hosts import Endpoint

# Seconds for any call to a provider's endpoints.
HTTP_TIMEOUT = 15.0
# Token endpoint errors that mean the grant is gone for good (RFC 6749 §5.2): re-authorize.
FATAL_GRANT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


@dataclass(frozen=True)
class Preset:
    """What a well-known provider needs beyond the operator's client id and secret."""

    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None
    jwks_uri: str | None
    issuer: str | None  # None: not checked (Microsoft's multi-tenant issuer varies)
    scopes: tuple[str, ...]
    imap: Endpoint
    smtp: Endpoint
    extra_authorize_params: dict[str, str] = field(default_factory=dict)


PRESETS = {
    # developers.google.com/identity/protocols/oauth2/web-server and
    # developers.google.com/workspace/gmail/imap/xoauth2-protocol: IMAP/SMTP need the
    # https://mail.google.com/ scope; access_type=offline gives a refresh token.
    "google": Preset(
        authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
        token_endpoint="https://oauth2.googleapis.com/token",  # noqa: S106 - a URL
        userinfo_endpoint="https://openidconnect.googleapis.com/v1/userinfo",
        jwks_uri="https://www.googleapis.com/oauth2/v3/certs",
        issuer="https://accounts.google.com",
        scopes=("openid", "email", "https://mail.google.com/"),
        imap=Endpoint("imap.gmail.com", 993, Security.SSL),
        smtp=Endpoint("smtp.gmail.com", 587, Security.STARTTLS),
        extra_authorize_params={"access_type": "offline", "prompt": "consent"},
    ),
    # learn.microsoft.com/exchange/client-developer/legacy-protocols/
    # how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
    "microsoft": Preset(
        authorization_endpoint="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_endpoint="https://login.microsoftonline.com/common/oauth2/v2.0/token",  # noqa: S106
        userinfo_endpoint=None,
        jwks_uri="https://login.microsoftonline.com/common/discovery/v2.0/keys",
        issuer=None,
        scopes=(
            "openid",
            "email",
            "offline_access",
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
        ),
        imap=Endpoint("outlook.office365.com", 993, Security.SSL),
        smtp=Endpoint("smtp.office365.com", 587, Security.STARTTLS),
    ),
}
# Generic OIDC providers ask for these unless configured otherwise.
DEFAULT_SCOPES = ("openid", "email", "offline_access")


@dataclass(frozen=True)
class Provider:
    """A provider ready to use: endpoints, client, scopes and mail servers."""

    name: str
    client_id: str
    client_secret: str | None = field(repr=False)
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None
    jwks_uri: str | None
    issuer: str | None
    scopes: tuple[str, ...]
    imap: Endpoint | None
    smtp: Endpoint | None
    extra_authorize_params: dict[str, str] = field(default_factory=dict)

    def session(self, **kwargs: Any) -> OAuth2Session:
        """An Authlib session for this client (PKCE S256)."""
        auth_method = "client_secret_post" if self.client_secret else "none"
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=" ".join(self.scopes),
            code_challenge_method="S256",
            token_endpoint_auth_method=auth_method,
            timeout=HTTP_TIMEOUT,
            **kwargs,
        )


# What a person recognises on a sign-in button, per preset.
PRESET_LABELS = {"google": "Google", "microsoft": "Microsoft"}


def labels(configured: dict[str, OAuthProviderSettings]) -> list[tuple[str, str]]:
    """(name, label) of every configured provider, without asking any of them anything."""
    found = []
    for name, conf in sorted(configured.items()):
        preset = conf.preset or (name if name in PRESETS else None)
        found.append((name, conf.label or PRESET_LABELS.get(preset or "", name)))
    return found


_discovered: dict[str, dict[str, Any]] = {}
_discovery_lock = threading.Lock()


def _discover(issuer: str) -> dict[str, Any]:
    """The issuer's OIDC metadata (cached per process)."""
    with _discovery_lock:
        if issuer in _discovered:
            return _discovered[issuer]
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        meta: dict[str, Any] = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise RemoteTemporaryError(f"OIDC discovery failed for {issuer}: {exc}") from None
    with _discovery_lock:
        _discovered[issuer] = meta
    return meta


def resolve(name: str, configured: dict[str, OAuthProviderSettings]) -> Provider:
    """The provider called ``name``, or NotFoundError if the operator did not configure it."""
    conf = configured.get(name)
    if conf is None:
        raise NotFoundError(f"no OAuth2 provider {name!r} is configured", provider=name)
    kind = conf.preset or (name if name in PRESETS else "oidc")
    base: dict[str, Any] = {}
    if kind in PRESETS:
        preset = PRESETS[kind]
        base = {
            "authorization_endpoint": preset.authorization_endpoint,
            "token_endpoint": preset.token_endpoint,
            "userinfo_endpoint": preset.userinfo_endpoint,
            "jwks_uri": preset.jwks_uri,
            "issuer": preset.issuer,
            "scopes": preset.scopes,
            "imap": preset.imap,
            "smtp": preset.smtp,
            "extra_authorize_params": dict(preset.extra_authorize_params),
        }
    elif conf.issuer and not (conf.authorization_endpoint and conf.token_endpoint):
        meta = _discover(conf.issuer)
        base = {
            "authorization_endpoint": meta.get("authorization_endpoint"),
            "token_endpoint": meta.get("token_endpoint"),
            "userinfo_endpoint": meta.get("userinfo_endpoint"),
            "jwks_uri": meta.get("jwks_uri"),
            "issuer": meta.get("issuer", conf.issuer),
        }
    return _merge(name, conf, base)


def _merge(name: str, conf: OAuthProviderSettings, base: dict[str, Any]) -> Provider:
    def pick(key: str) -> Any:
        value = getattr(conf, key)
        return value if value is not None else base.get(key)

    authorize, token = pick("authorization_endpoint"), pick("token_endpoint")
    if not authorize or not token:
        raise ConfigError(
            f"invalid configuration: OAUTH_PROVIDERS: {name}: needs a preset, an issuer "
            "or authorization_endpoint and token_endpoint"
        )
    imap = base.get("imap")
    if conf.imap_host:
        imap = Endpoint(conf.imap_host, conf.imap_port or 993, conf.imap_security or Security.SSL)
    smtp = base.get("smtp")
    if conf.smtp_host:
        security = conf.smtp_security or Security.STARTTLS
        smtp = Endpoint(conf.smtp_host, conf.smtp_port or 587, security)
    scopes = tuple(conf.scopes) if conf.scopes else tuple(base.get("scopes") or DEFAULT_SCOPES)
    return Provider(
        name=name,
        client_id=conf.client_id,
        client_secret=conf.client_secret,
        authorization_endpoint=authorize,
        token_endpoint=token,
        userinfo_endpoint=pick("userinfo_endpoint"),
        jwks_uri=pick("jwks_uri"),
        issuer=pick("issuer"),
        scopes=scopes,
        imap=imap,
        smtp=smtp,
        extra_authorize_params=base.get("extra_authorize_params", {}),
    )


def with_endpoints(provider: Provider, imap: Endpoint, smtp: Endpoint) -> Provider:
    """The provider with other mail servers (tests, self-hosted servers)."""
    return replace(provider, imap=imap, smtp=smtp)


def refresh(provider: Provider, refresh_token: str) -> dict[str, Any]:
    """The refresh grant (RFC 6749 §6); a dead grant is a RemoteAuthError with its reason."""
    session = provider.session()
    try:
        token: dict[str, Any] = session.refresh_token(
            provider.token_endpoint, refresh_token=refresh_token
        )
    except OAuthError as exc:
        raise grant_error(exc) from None
    except requests.RequestException as exc:
        raise RemoteTemporaryError(f"token endpoint unreachable: {type(exc).__name__}") from None
    finally:
        session.close()
    return token


def grant_error(exc: OAuthError) -> RemoteAuthError | RemoteTemporaryError:
    """RFC 6749 §5.2 error of the token endpoint, as ours (the token is never in it)."""
    reason = f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
    if exc.error in FATAL_GRANT_ERRORS:
        return RemoteAuthError(f"OAuth2 provider refused the grant ({reason})", reason=reason)
    return RemoteTemporaryError(f"OAuth2 token request failed ({reason})", reason=reason)
