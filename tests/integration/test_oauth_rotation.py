"""rotate-key re-encrypts OAuth2 tokens with the passwords; neither is ever returned."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from email_service.security.crypto import Vault, generate_key
from email_service.services import accounts
from email_service.services.accounts import AccountFields
from email_service.services.oauth import tokens as oauth_tokens
from email_service.services.runtime import Runtime
from email_service.store import migrate
from email_service.store.models import Account
from tests.conftest import TENANT_A


def test_rotate_keys_re_encrypts_tokens_and_passwords(sqlite_settings: Any) -> None:
    old, new = generate_key(), generate_key()
    runtime = Runtime.build(sqlite_settings(encryption_key=[old]))
    migrate.upgrade(runtime.db.engine)
    tokens = oauth_tokens.TokenSet("access-1", datetime(2030, 1, 1, tzinfo=UTC), "refresh-1")
    with runtime.db.session() as session:
        for fields in (
            AccountFields(email="tok@example.test", oauth=tokens, oauth_provider="idp"),
            AccountFields(email="pw@example.test", password="pw-1"),
        ):
            accounts.create_account(session, TENANT_A, fields, runtime.vault, runtime.hosts)
    both = Vault([new, old])
    with runtime.db.session() as session:
        assert accounts.rotate_keys(session, both) == (2, 2)
    only_new = Vault([new])
    with runtime.db.session() as session:
        rows = {row.email: row for row in session.query(Account)}
        token_row, password_row = rows["tok@example.test"], rows["pw@example.test"]
        assert token_row.oauth_key_id == only_new.primary_key_id
        assert token_row.oauth_ciphertext is not None
        assert oauth_tokens.unseal(only_new, token_row.oauth_ciphertext) == tokens
        assert token_row.password_ciphertext is None and token_row.auth_kind == "oauth2"
        assert password_row.password_key_id == only_new.primary_key_id
        assert password_row.oauth_ciphertext is None and password_row.auth_kind == "password"
    with runtime.db.session() as session:
        assert accounts.rotate_keys(session, both) == (0, 2)  # nothing left to do
    runtime.db.dispose()
