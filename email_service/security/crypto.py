"""Encryption of stored mail credentials: Fernet (AES-128-CBC + HMAC-SHA256) via MultiFernet.

Each ciphertext is stored with the id of the key that made it, so a rotation can tell
which rows still need re-encrypting. Keys come from ENCRYPTION_KEY (comma-separated,
first one encrypts). A value that is not a Fernet key is treated as a passphrase and
stretched with scrypt, so free-form ``ENCRYPTION_KEY`` passphrases still work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from email_service.errors import ConfigError, EmailServiceError

# Passphrases shorter than this are refused: they would be guessable offline.
MIN_PASSPHRASE_LENGTH = 32
# scrypt cost (RFC 7914): n=2**14, r=8 takes ~50 ms once per process start.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_SALT = b"email-service/encryption-key/v1"
SCHEME = "fernet"


class DecryptError(EmailServiceError):
    """A stored secret cannot be decrypted with any configured key."""

    code = "decrypt_failed"


def key_id(fernet_key: bytes) -> str:
    """A short public id for a key: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(fernet_key).hexdigest()[:12]


def _as_fernet_key(value: str) -> bytes:
    raw = value.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32 and len(raw) == 44:
            return raw
    except (binascii.Error, ValueError):
        pass
    if len(value) < MIN_PASSPHRASE_LENGTH:
        raise ConfigError(
            "invalid configuration: ENCRYPTION_KEY: each key must be a Fernet key or a "
            f"passphrase of at least {MIN_PASSPHRASE_LENGTH} characters"
        )
    derived = hashlib.scrypt(
        value.encode(), salt=SCRYPT_SALT, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return base64.urlsafe_b64encode(derived)


@dataclass(frozen=True)
class Sealed:
    """A ciphertext with the scheme and key id it was made with."""

    ciphertext: str
    key_id: str
    scheme: str = SCHEME


class Vault:
    """Encrypts with the first key, decrypts with any (MultiFernet)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError("invalid configuration: ENCRYPTION_KEY: no key configured")
        fernet_keys = [_as_fernet_key(k) for k in keys]
        self._multi = MultiFernet([Fernet(k) for k in fernet_keys])
        self.primary_key_id = key_id(fernet_keys[0])
        self.key_ids = [key_id(k) for k in fernet_keys]

    def encrypt(self, plaintext: str) -> Sealed:
        """Encrypt with the primary key."""
        token = self._multi.encrypt(plaintext.encode())
        return Sealed(token.decode(), self.primary_key_id)

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt with whichever configured key made it."""
        try:
            return self._multi.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise DecryptError(
                "stored credentials cannot be decrypted with the configured keys"
            ) from None

    def rotate(self, ciphertext: str) -> Sealed:
        """Re-encrypt under the primary key (MultiFernet.rotate)."""
        try:
            token = self._multi.rotate(ciphertext.encode())
        except InvalidToken:
            raise DecryptError(
                "stored credentials cannot be decrypted with the configured keys"
            ) from None
        return Sealed(token.decode(), self.primary_key_id)


def generate_key() -> str:
    """A fresh Fernet key for ENCRYPTION_KEY."""
    return Fernet.generate_key().decode()
