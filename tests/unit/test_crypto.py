"""Credential encryption: Fernet keys or passphrases, key ids, rotation."""

from __future__ import annotations

import pytest

from email_service.errors import ConfigError
from email_service.security.crypto import DecryptError, Vault, generate_key

PASSWORD = "hunter2-ünïcode"


def test_round_trip_and_key_id() -> None:
    vault = Vault([generate_key()])
    sealed = vault.encrypt(PASSWORD)
    assert PASSWORD not in sealed.ciphertext
    assert sealed.key_id == vault.primary_key_id and sealed.scheme == "fernet"
    assert vault.decrypt(sealed.ciphertext) == PASSWORD


def test_passphrase_is_stretched_deterministically() -> None:
    phrase = "a long operator passphrase of forty chars!"
    one, two = Vault([phrase]), Vault([phrase])
    assert one.primary_key_id == two.primary_key_id
    assert two.decrypt(one.encrypt(PASSWORD).ciphertext) == PASSWORD


@pytest.mark.parametrize("key", ["short", "x" * 31])
def test_weak_keys_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        Vault([key])


def test_rotation_moves_rows_to_new_key_and_old_key_can_go() -> None:
    old_key, new_key = generate_key(), generate_key()
    old = Vault([old_key])
    sealed = old.encrypt(PASSWORD)
    both = Vault([new_key, old_key])
    rotated = both.rotate(sealed.ciphertext)
    assert rotated.key_id == both.primary_key_id != sealed.key_id
    assert Vault([new_key]).decrypt(rotated.ciphertext) == PASSWORD
    with pytest.raises(DecryptError):
        Vault([new_key]).decrypt(sealed.ciphertext)
