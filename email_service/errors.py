"""The one error tree of the service.

::

    EmailServiceError                 base; never raised itself
    ├── ValidationError               input that breaks a rule (422)
    │   ├── BadRequestError           a malformed request: header, body encoding (400)
    │   │   └── QuerySyntaxError      a search query that does not parse (mail/query_ast.py)
    │   └── HeaderInjectionError      CR/LF where a header value is built (400)
    ├── NotFoundError                 no such object *for this tenant* (404)
    ├── ConflictError                 state forbids it, e.g. duplicate account (409)
    │   └── LeaseLostError            another worker took over a send (outgoing/delivery.py)
    ├── AuthError                     bad or missing credentials (401)
    │   └── ForbiddenError            authenticated, not allowed (403)
    ├── FeatureDisabledError          an ENABLE_* flag is off (503)
    ├── SearchTimeoutError            a search ran past SEARCH_TIMEOUT_SECONDS (503)
    ├── ConfigError                   settings that cannot start the service
    ├── RemoteError                   a mail server misbehaved
    │   ├── RemoteTemporaryError      worth retrying (timeouts, 4xx, connection loss)
    │   ├── RemotePermanentError      not worth retrying (5xx, refused login)
    │   │   ├── RemoteAuthError       the server refused our credentials
    │   │   └── ImapProtocolError     a reply the IMAP grammar does not allow (mail/imap/parse.py)
    │   └── SmtpAmbiguousError        no reply after the final dot: maybe sent (mail/smtp.py)
    ├── DecryptError                  a stored secret no configured key opens (security/crypto.py)
    └── BlockedHostError              a mail host the operator does not allow

Errors that belong to one concept live beside it (the module in brackets) and are
subclasses of this tree, so the API maps them by their place in it.

Only ``email_service.api`` maps these to HTTP statuses (``api/problems.py``).
A foreign tenant's object is a :class:`NotFoundError`, never a 403.
"""

from __future__ import annotations

from typing import Any


class EmailServiceError(Exception):
    """Base of every error the service raises on purpose."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(EmailServiceError):
    """Input that breaks a rule; ``field`` names the offending field when known."""

    code = "validation_error"

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.field = field


class BadRequestError(ValidationError):
    """A malformed request envelope: a bad header, a body that is not JSON."""

    code = "bad_request"


class HeaderInjectionError(ValidationError):
    """A CR or LF where a header value or address is built."""

    code = "header_injection"


class NotFoundError(EmailServiceError):
    """No such object for this tenant."""

    code = "not_found"


class ConflictError(EmailServiceError):
    """The current state forbids the operation."""

    code = "conflict"


class AuthError(EmailServiceError):
    """Missing or invalid credentials."""

    code = "unauthorized"


class ForbiddenError(AuthError):
    """Authenticated, but not allowed to act for this tenant."""

    code = "forbidden"


class FeatureDisabledError(EmailServiceError):
    """A feature flag (``ENABLE_*``) turns this operation off."""

    code = "feature_disabled"


class SearchTimeoutError(EmailServiceError):
    """A search whose statements ran past their time limit (``SEARCH_TIMEOUT_SECONDS``)."""

    code = "search_timeout"


class ConfigError(EmailServiceError):
    """Settings with which the service cannot start."""

    code = "config_error"


class RemoteError(EmailServiceError):
    """A remote mail server failed or misbehaved."""

    code = "remote_error"


class RemoteTemporaryError(RemoteError):
    """A remote failure worth retrying: timeout, connection loss, 4xx."""

    code = "remote_temporary"


class RemotePermanentError(RemoteError):
    """A remote failure not worth retrying: 5xx, protocol violation."""

    code = "remote_permanent"


class RemoteAuthError(RemotePermanentError):
    """The mail server refused our credentials."""

    code = "remote_auth_failed"


class BlockedHostError(EmailServiceError):
    """A mail host that resolves to an address the operator has not allowed."""

    code = "blocked_host"
