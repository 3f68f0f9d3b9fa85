"""Settings: the documented variables and defaults, one-line errors, production secrets."""

from __future__ import annotations

import os
import secrets
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from email_service.config import Settings, load_settings, with_generated_secrets
from email_service.errors import ConfigError

SPEC_DEFAULTS = {
    "FLASK_ENV": "production",
    "FLASK_HOST": "0.0.0.0",
    "FLASK_PORT": 5000,
    "IMAP_TIMEOUT": 30,
    "SMTP_TIMEOUT": 30,
    "IMAP_POOL_SIZE": 10,
    "SMTP_POOL_SIZE": 5,
    "GUNICORN_WORKERS": 4,
    "GUNICORN_THREADS": 2,
    "GUNICORN_TIMEOUT": 120,
    "LOG_LEVEL": "INFO",
    "ENABLE_IMAP_SYNC": True,
    "ENABLE_SMTP_SEND": True,
    "ENABLE_CELERY_TASKS": True,
    "ENABLE_EMAIL_PARSING": True,
    "RATE_LIMIT_ENABLED": True,
    "RATE_LIMIT_REQUESTS_PER_MINUTE": 60,
    "RATE_LIMIT_REQUESTS_PER_HOUR": 1000,
    "TENANT_ID_HEADER": "X-Tenant-ID",
    "DEFAULT_TENANT_ID": "default",
    "CORS_ORIGINS": ["localhost:3000", "emailclient.local:3000"],
}
SPEC_REQUIRED = [
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "JWT_SECRET",
    "ENCRYPTION_KEY",
]
# Random values: production refuses repeats and sequences (security/strength.py).
GOOD_SECRETS = {
    "JWT_SECRET": secrets.token_urlsafe(48),
    "ENCRYPTION_KEY": Fernet.generate_key().decode(),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name in Settings.model_fields or name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_every_spec_variable_is_a_setting() -> None:
    for name in [*SPEC_DEFAULTS, *SPEC_REQUIRED]:
        assert name.lower() in Settings.model_fields, name


@pytest.mark.parametrize(("name", "expected"), SPEC_DEFAULTS.items())
def test_spec_defaults(monkeypatch: pytest.MonkeyPatch, name: str, expected: object) -> None:
    for key, value in GOOD_SECRETS.items():
        monkeypatch.setenv(key, value)
    assert getattr(load_settings(), name.lower()) == expected


@pytest.mark.parametrize(
    ("name", "value", "parsed"),
    [
        ("GUNICORN_WORKERS", "8", 8),
        ("IMAP_TIMEOUT", "2.5", 2.5),
        ("ENABLE_IMAP_SYNC", "false", False),
        ("RATE_LIMIT_ENABLED", "0", False),
        (
            "CORS_ORIGINS",
            "https://a.example, b.example:3000",
            ["https://a.example", "b.example:3000"],
        ),
        ("ALLOWED_MAIL_HOSTS", "dovecot,10.0.0.0/8", ["dovecot", "10.0.0.0/8"]),
        ("DATABASE_URL", "postgresql://u:p@db/x", "postgresql://u:p@db/x"),
        ("LOG_LEVEL", "DEBUG", "DEBUG"),
    ],
)
def test_values_are_parsed(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, parsed: object
) -> None:
    for key, secret in GOOD_SECRETS.items():
        monkeypatch.setenv(key, secret)
    monkeypatch.setenv(name, value)
    assert getattr(load_settings(), name.lower()) == parsed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GUNICORN_WORKERS", "abc"),
        ("GUNICORN_WORKERS", "0"),
        ("FLASK_PORT", "70000"),
        ("IMAP_TIMEOUT", "-1"),
        ("LOG_LEVEL", "LOUD"),
        ("FLASK_ENV", "staging"),
        ("ENABLE_SMTP_SEND", "maybe"),
        ("ALLOWED_MAIL_HOSTS", "10.0.0.0/33"),
        ("DATABASE_URL", "not a url"),
        ("DEFAULT_TENANT_ID", "bad tenant"),
        ("IMAP_HOST", "two words"),
    ],
)
def test_bad_values_stop_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    for key, secret in GOOD_SECRETS.items():
        monkeypatch.setenv(key, secret)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = caught.value.message
    assert "\n" not in message
    assert f"{name}:" in message


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"JWT_SECRET": GOOD_SECRETS["JWT_SECRET"]},
        {"ENCRYPTION_KEY": GOOD_SECRETS["ENCRYPTION_KEY"]},
        {
            "JWT_SECRET": "your-jwt-secret-key-change-in-production",
            "ENCRYPTION_KEY": GOOD_SECRETS["ENCRYPTION_KEY"],
        },
        {
            "JWT_SECRET": GOOD_SECRETS["JWT_SECRET"],
            "ENCRYPTION_KEY": "your-encryption-key-change-in-production",
        },
        {"JWT_SECRET": "short", "ENCRYPTION_KEY": GOOD_SECRETS["ENCRYPTION_KEY"]},
    ],
)
def test_production_refuses_missing_or_placeholder_secrets(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "JWT_SECRET" in caught.value.message or "ENCRYPTION_KEY" in caught.value.message
    for value in env.values():  # the secret itself is never echoed
        assert value not in caught.value.message


def test_development_generates_secrets_once_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    warnings: list[str] = []
    first = with_generated_secrets(load_settings(), warnings.append)
    second = with_generated_secrets(load_settings(), warnings.append)
    assert first.jwt_secret and first.jwt_secret == second.jwt_secret
    assert first.encryption_key and first.encryption_key == second.encryption_key
    assert len(warnings) == 2  # only the first run generated anything
    for name in ("jwt_secret", "encryption_key"):
        mode = stat.S_IMODE((tmp_path / "d" / name).stat().st_mode)
        assert mode == 0o600


def test_concurrent_generation_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_ENV", "development")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    results: list[str | None] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                with_generated_secrets(load_settings(), lambda _: None).jwt_secret
            )
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and results[0]


def test_derived_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, secret in GOOD_SECRETS.items():
        monkeypatch.setenv(key, secret)
    settings = load_settings()
    assert settings.embedded
    assert settings.sqlalchemy_url.startswith("sqlite:///") and settings.sqlalchemy_url.endswith(
        "data/email-service.db"
    )
    assert settings.cors_origin_urls == []  # production admits no origin unless told
    monkeypatch.setenv("FLASK_ENV", "development")
    assert load_settings().cors_origin_urls == [
        "http://localhost:3000",
        "https://localhost:3000",
        "http://emailclient.local:3000",
        "https://emailclient.local:3000",
    ]
    monkeypatch.setenv("FLASK_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    settings = load_settings()
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert not settings.embedded
    assert settings.broker_url == settings.result_backend == "redis://r:6379/0"


def test_server_passwords_from_secret_files_go_into_urls_that_name_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "database_password").write_text("p@ss:/wörd")
    (secrets_dir / "redis_password").write_text("r3dis")
    monkeypatch.setenv("SECRETS_DIR", str(secrets_dir))
    monkeypatch.setenv("FLASK_ENV", "development")
    monkeypatch.setenv("DATABASE_URL", "postgresql://emailclient@postgres:5432/db")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://redis:6379/1")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://:given@redis:6379/1")
    settings = load_settings(_env_file=None)
    assert (
        settings.database_url == "postgresql://emailclient:p%40ss%3A%2Fw%C3%B6rd@postgres:5432/db"
    )
    assert settings.redis_url == "redis://:r3dis@redis:6379/0"
    assert settings.broker_url == "redis://:r3dis@redis:6379/1"
    assert settings.result_backend == "redis://:given@redis:6379/1"  # its own password stays
    from sqlalchemy.engine import make_url

    assert make_url(settings.sqlalchemy_url).password == "p@ss:/wörd"
