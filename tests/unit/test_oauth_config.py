"""OAuth2 pieces without servers: SASL messages (RFC 7628 §4.1), provider resolution."""

from __future__ import annotations

import pytest

from email_service.config import OAuthProviderSettings, Security
from email_service.errors import ConfigError, NotFoundError, RemotePermanentError
from email_service.mail import sasl
from email_service.services.oauth import providers

TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="


def test_oauthbearer_message_is_rfc_7628s_example() -> None:
    message = sasl.initial_response(
        "OAUTHBEARER", "user@example.com", sasl.BearerToken(TOKEN), "server.example.com", 143
    )
    assert message == (
        "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        f"auth=Bearer {TOKEN}\x01\x01"
    )


def test_xoauth2_message_is_googles_format() -> None:
    message = sasl.initial_response(
        "XOAUTH2", "someuser@example.com", sasl.BearerToken("ya29"), "", 0
    )
    assert message == "user=someuser@example.com\x01auth=Bearer ya29\x01\x01"


def test_authzid_commas_and_equals_are_escaped() -> None:
    message = sasl.initial_response("OAUTHBEARER", "a,b=c", sasl.BearerToken("t"), "h", 1)
    assert message.startswith("n,a=a=2Cb=3Dc,\x01")


def test_mechanism_preference_and_absence() -> None:
    assert sasl.choose_mechanism({"XOAUTH2", "OAUTHBEARER", "PLAIN"}) == "OAUTHBEARER"
    assert sasl.choose_mechanism({"XOAUTH2", "PLAIN"}) == "XOAUTH2"
    with pytest.raises(RemotePermanentError):
        sasl.choose_mechanism({"PLAIN", "LOGIN"})


def test_presets_fill_endpoints_scopes_and_servers() -> None:
    google = providers.resolve("google", {"google": OAuthProviderSettings(client_id="g")})
    assert "https://mail.google.com/" in google.scopes
    assert google.imap is not None and google.imap.host == "imap.gmail.com"
    assert google.extra_authorize_params["access_type"] == "offline"
    ms = providers.resolve(
        "work", {"work": OAuthProviderSettings(preset="microsoft", client_id="m")}
    )
    assert {"offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All"} <= set(ms.scopes)
    assert "https://outlook.office.com/SMTP.Send" in ms.scopes
    assert ms.smtp is not None and ms.smtp.host == "smtp.office365.com"


def test_explicit_endpoints_and_servers_override() -> None:
    conf = OAuthProviderSettings(
        client_id="c",
        authorization_endpoint="https://idp.example/auth",
        token_endpoint="https://idp.example/token",
        imap_host="imap.example",
        smtp_host="smtp.example",
        smtp_security=Security.SSL,
        smtp_port=465,
    )
    resolved = providers.resolve("corp", {"corp": conf})
    assert resolved.token_endpoint == "https://idp.example/token"
    assert resolved.scopes == providers.DEFAULT_SCOPES
    assert resolved.imap is not None and resolved.imap.port == 993
    assert resolved.smtp is not None and (resolved.smtp.port, resolved.smtp.security) == (
        465,
        Security.SSL,
    )


def test_unknown_and_incomplete_providers() -> None:
    with pytest.raises(NotFoundError):
        providers.resolve("nope", {})
    with pytest.raises(ConfigError):
        providers.resolve("bare", {"bare": OAuthProviderSettings(client_id="c")})
