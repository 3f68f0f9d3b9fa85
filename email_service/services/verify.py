"""Check an account's credentials: log in to its IMAP and SMTP servers and say what worked.

Runs in the request (a short, bounded check: IMAP_TIMEOUT/SMTP_TIMEOUT), only against
hosts the SSRF guard admits; nothing is read or sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from email_service.config import Security
from email_service.errors import EmailServiceError, RemoteAuthError
from email_service.mail.smtp import SmtpSession, SmtpTarget
from email_service.services import gateways
from email_service.services.hosts import Endpoint
from email_service.services.runtime import Runtime
from email_service.store.models import Account
from email_service.store.states import AccountStatus


@dataclass(frozen=True)
class Check:
    """The outcome of one login."""

    ok: bool
    detail: str


def _describe(exc: EmailServiceError) -> str:
    if isinstance(exc, RemoteAuthError):
        return "the server refused the credentials"
    return exc.message


def _imap(runtime: Runtime, login: gateways.Login) -> Check:
    try:
        with gateways.open_imap(runtime, login) as imap:
            caps = " ".join(
                sorted(
                    c for c in imap.capabilities if c in {"CONDSTORE", "QRESYNC", "MOVE", "UIDPLUS"}
                )
            )
    except EmailServiceError as exc:
        return Check(False, _describe(exc))
    except OSError as exc:
        return Check(False, f"connection failed: {exc.strerror or type(exc).__name__}")
    return Check(True, f"logged in ({caps or 'basic IMAP'})")


def _smtp(runtime: Runtime, account: Account, password: str) -> Check:
    endpoint = Endpoint(account.smtp_host, account.smtp_port, Security(account.smtp_security))
    ca_file = runtime.settings.mail_ca_file
    try:
        target = SmtpTarget(
            host=endpoint.host,
            port=endpoint.port,
            security=endpoint.security.value,
            username=account.username,
            password=password,
            timeout=runtime.settings.smtp_timeout,
            connect_address=runtime.hosts.addresses(endpoint)[0],
            ca_file=str(ca_file) if ca_file else None,
        )
        SmtpSession(target).close()
    except EmailServiceError as exc:
        return Check(False, _describe(exc))
    except OSError as exc:
        return Check(False, f"connection failed: {exc.strerror or type(exc).__name__}")
    return Check(True, "logged in")


def verify_account(runtime: Runtime, tenant_id: str, account_id: uuid.UUID) -> dict[str, Check]:
    """Log in to both servers; a working IMAP login clears an ``auth_failed`` status."""
    with runtime.db.session() as session:
        login = gateways.account_login(session, runtime, tenant_id, account_id)
        account = session.get_one(Account, account_id)
    result = {"imap": _imap(runtime, login), "smtp": _smtp(runtime, account, login.password)}
    with runtime.db.session() as session:
        row = session.get_one(Account, account_id)
        if result["imap"].ok and row.status == AccountStatus.AUTH_FAILED:
            row.status = AccountStatus.ACTIVE
        elif not result["imap"].ok and "refused the credentials" in result["imap"].detail:
            row.status = AccountStatus.AUTH_FAILED
    return result
