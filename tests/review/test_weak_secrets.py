"""Finding 10: production refuses weak JWT_SECRET and ENCRYPTION_KEY values (repeats,
sequences, low estimated entropy, all-zero Fernet keys), and passphrase keys are derived
with a per-deployment salt (ENCRYPTION_SALT), old fixed-salt ciphertexts still readable."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from email_service.config import load_settings, with_generated_secrets
from email_service.errors import ConfigError
from email_service.security import strength
from email_service.security.crypto import Vault, generate_key

WEAK = {
    "32 x a": "a" * 32,
    "digits in order": "0123456789" * 4,
    "alphabet": "abcdefghijklmnopqrstuvwxyzABCDEF",
    "short pattern": "abc1" * 12,
    "keyboard": "qwertyuiop" * 4,
    "low entropy": "abababababababababababababababbbaaaab",
}
PHRASE = "correct horse battery staple and then some more words!"


@pytest.mark.parametrize("value", WEAK.values(), ids=WEAK.keys())
def test_weak_values_have_a_reason(value: str) -> None:
    assert strength.weakness(value) is not None


@pytest.mark.parametrize(
    "value",
    [secrets.token_urlsafe(48), secrets.token_hex(32), generate_key(), PHRASE],
    ids=["token_urlsafe(48)", "token_hex(32)", "fernet key", "passphrase"],
)
def test_real_secrets_pass(value: str) -> None:
    assert strength.weakness(value) is None


def test_an_all_zero_fernet_key_is_weak() -> None:
    zero_key = base64.urlsafe_b64encode(bytes(32)).decode()
    assert strength.weakness(zero_key) is not None


@pytest.mark.parametrize("value", WEAK.values(), ids=WEAK.keys())
def test_production_refuses_weak_secrets(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FLASK_ENV", "production")
    monkeypatch.setenv("ENCRYPTION_SALT", secrets.token_urlsafe(24))
    monkeypatch.setenv("JWT_SECRET", value)
    monkeypatch.setenv("ENCRYPTION_KEY", generate_key())
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings()
    monkeypatch.setenv("JWT_SECRET", secrets.token_urlsafe(48))
    monkeypatch.setenv("ENCRYPTION_KEY", value)
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY") as caught:
        load_settings()
    assert value not in caught.value.message


def test_production_passphrase_needs_a_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", secrets.token_urlsafe(48))
    monkeypatch.setenv("ENCRYPTION_KEY", PHRASE)
    monkeypatch.delenv("ENCRYPTION_SALT", raising=False)
    with pytest.raises(ConfigError, match="ENCRYPTION_SALT"):
        load_settings()
    monkeypatch.setenv("ENCRYPTION_SALT", secrets.token_urlsafe(24))
    assert load_settings().encryption_key == [PHRASE]


def test_passphrase_keys_depend_on_the_salt() -> None:
    one = Vault([PHRASE], salt=b"deployment-one-salt")
    two = Vault([PHRASE], salt=b"deployment-two-salt")
    assert one.primary_key_id != two.primary_key_id
    legacy = Vault([PHRASE])  # before: the fixed salt
    old = legacy.encrypt("pw").ciphertext
    assert one.decrypt(old) == "pw"  # rows written with the fixed salt stay readable
    assert one.rotate(old).key_id == one.primary_key_id  # and rotate-key moves them


def test_development_generates_a_salt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ENCRYPTION_KEY", PHRASE)
    settings = with_generated_secrets(load_settings(), lambda _: None)
    assert settings.encryption_salt and len(settings.encryption_salt) >= 16
    again = with_generated_secrets(load_settings(), lambda _: None)
    assert again.encryption_salt == settings.encryption_salt
