"""Gateways to an account's servers and to the raw-MIME store, shared by sync and sending.

Credentials are decrypted here, inside a job, and live only as long as the session they open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from email_service.config import Security
from email_service.mail.imap.session import ImapSession
from email_service.mail.sasl import BearerToken
from email_service.services.hosts import Endpoint
from email_service.services.oauth import tokens as oauth_tokens
from email_service.services.runtime import Runtime
from email_service.store.blobs import BlobStore
from email_service.store.models import Account
from email_service.store.tenancy import tenant_row


@dataclass(frozen=True)
class Login:
    """What it takes to open the account's IMAP session."""

    endpoint: Endpoint
    username: str
    password: str | BearerToken  # an OAuth2 account's access token


def account_login(
    session: Session, runtime: Runtime, tenant_id: str, account_id: uuid.UUID
) -> Login:
    """The account's IMAP endpoint and decrypted credentials (jobs and checks only)."""
    row = tenant_row(session, Account, tenant_id, account_id, account_id=str(account_id))
    return row_login(runtime, row)


def row_login(runtime: Runtime, row: Account) -> Login:
    """:func:`account_login` of an account row already read."""
    endpoint = Endpoint(row.imap_host, row.imap_port, Security(row.imap_security))
    return Login(endpoint, row.username, oauth_tokens.login_secret(runtime, row))


def blob_store(runtime: Runtime, tenant_id: str) -> BlobStore:
    """The tenant's raw MIME and uploads (BLOB_STORE_URL; default DATA_DIR/blobs)."""
    return runtime.blobs.tenant(tenant_id)


def open_imap(runtime: Runtime, login: Login) -> ImapSession:
    """Connect to a vetted address of the account's server and log in."""
    addresses = runtime.hosts.addresses(login.endpoint, "imap")
    ca_file = runtime.settings.mail_ca_file
    return ImapSession(
        login.endpoint.host,
        login.endpoint.port,
        login.endpoint.security.value,
        login.username,
        login.password,
        timeout=runtime.settings.imap_timeout,
        connect_address=addresses[0],
        ca_file=str(ca_file) if ca_file else None,
    )
