"""What a caller is told when a mail server cannot be reached: a category, not the error.

A socket error (``connecting to host:993: Connection refused``), a timeout, a TLS failure
or a greeting in the wrong protocol each tell a caller something about a port on a host
it may name; answered verbatim, verify and sync would be a port scanner. Before a login
succeeds every failure but refused credentials is one sentence; the detail goes to the log.
"""

from __future__ import annotations

import logging

from email_service.errors import EmailServiceError, RemoteAuthError, RemoteError

CREDENTIALS_REFUSED = "the server refused the credentials"
log = logging.getLogger("email_service.mail")


def unreachable(protocol: str) -> str:
    """The one sentence for every connection failure of ``protocol`` (IMAP or SMTP)."""
    return (
        f"could not connect to a working {protocol} server at the account's host and port "
        "(the service log has the details)"
    )


def before_login(protocol: str, exc: BaseException) -> str:
    """The caller's text for ``exc``, raised while connecting or logging in; logs the detail."""
    if isinstance(exc, RemoteAuthError):
        return CREDENTIALS_REFUSED
    if isinstance(exc, RemoteError | OSError):
        detail = exc.message if isinstance(exc, EmailServiceError) else repr(exc)
        log.warning("%s connection failed: %s", protocol, detail)
        return unreachable(protocol)
    return exc.message if isinstance(exc, EmailServiceError) else unreachable(protocol)
