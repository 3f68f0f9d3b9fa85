"""A test Dovecot user registered as an account through the service layer (no HTTP)."""

from __future__ import annotations

import uuid
from typing import Any

from email_service.config import Security
from email_service.services import accounts
from email_service.services.accounts import AccountFields


def register(runtime: Any, tenant: str, dovecot: Any, user: Any, **extra: Any) -> uuid.UUID:
    """The id of ``user``'s new account of ``tenant``, on the test Dovecot over plain IMAP."""
    fields = AccountFields(
        email=user.email,
        password=user.password,
        imap_host="127.0.0.1",
        imap_port=dovecot.imap_port,
        imap_security=Security.NONE,
        **extra,
    )
    with runtime.db.session() as session:
        return accounts.create_account(session, tenant, fields, runtime.vault, runtime.hosts).id
