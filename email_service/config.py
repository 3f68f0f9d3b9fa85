"""Settings: every variable of docs/configuration.md, typed, validated and defaulted.

Read from the environment (and a ``.env`` file in the working directory, if any).
Unknown values stop start-up with one line naming the variable: see :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from collections.abc import Callable
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from email_service.errors import ConfigError

# Words that mark a secret as a placeholder copied from documentation.
PLACEHOLDER_WORDS = ("change", "your-", "example", "placeholder", "secret-key", "default")
# HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
MIN_SECRET_LENGTH = 32


class Security(StrEnum):
    """How a mail connection is protected."""

    SSL = "ssl"  # TLS from the first byte (IMAPS 993, SMTPS 465)
    STARTTLS = "starttls"  # plaintext greeting, then STARTTLS (RFC 2595, RFC 3207)
    NONE = "none"  # plaintext; only when an account asks for it


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """The service's configuration; field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- required in production (docs/configuration.md) ---
    database_url: str | None = None  # unset: SQLite in DATA_DIR (embedded default)
    redis_url: str | None = None  # unset: in-process jobs, in-memory limits
    celery_broker_url: str | None = None  # unset: REDIS_URL
    celery_result_backend: str | None = None  # unset: REDIS_URL
    jwt_secret: str | None = None  # unset outside production: generated into DATA_DIR

    # --- Flask ---
    flask_env: Literal["production", "development"] = "production"
    flask_host: str = "0.0.0.0"  # noqa: S104 - a container's default: listen on every interface
    flask_port: int = Field(5000, ge=1, le=65535)

    # --- CORS: exact origins; "host:port" entries get http:// and https:// ---
    cors_origins: Annotated[list[str], NoDecode] = ["localhost:3000", "emailclient.local:3000"]

    # --- mail protocol ---
    imap_timeout: float = Field(30, gt=0, le=3600)  # seconds, every IMAP socket operation
    smtp_timeout: float = Field(30, gt=0, le=3600)  # seconds, every SMTP socket operation
    imap_pool_size: int = Field(10, ge=1, le=1000)  # IMAP connections per worker process
    smtp_pool_size: int = Field(5, ge=1, le=1000)  # SMTP connections reused per worker

    # Account defaults: a `{"email", "password"}` body takes its servers from here.
    imap_host: str = "localhost"
    imap_port: int = Field(993, ge=1, le=65535)
    imap_security: Security = Security.SSL
    smtp_host: str = "localhost"
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Security = Security.STARTTLS
    # Extra CA bundle for verifying mail servers' TLS (a self-hosted CA); system CAs otherwise.
    mail_ca_file: Path | None = None
    # Sync raw MIME to disk before its row commits (survives power loss; costs an fsync each).
    blob_fsync: bool = True
    # Processes that parse a large sync's messages (unset: one per core; 0: parse inline).
    sync_parse_processes: int | None = Field(None, ge=0, le=64)
    # Minutes between beat's syncs of every active account.
    sync_interval_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    # A running sync renews its account lock; a dead worker's lock frees after this.
    sync_lock_ttl_seconds: int = Field(300, ge=2, le=24 * 3600)
    # Most syncs beat queues per tick (a minute): 1,000 x 60 ticks covers 60,000 accounts an
    # hour at the default interval, most overdue first, without a thundering herd.
    sync_due_batch: int = Field(1000, ge=1, le=100_000)
    # A search's statements stop after this many seconds (0: no limit of ours).
    search_timeout_seconds: float = Field(10, ge=0, le=3600)
    # Non-public hosts/CIDRs accounts may point at (public addresses are always allowed).
    allowed_mail_hosts: Annotated[list[str], NoDecode] = []

    # --- Gunicorn ---
    gunicorn_workers: int = Field(4, ge=1, le=256)
    gunicorn_threads: int = Field(2, ge=1, le=1024)
    gunicorn_timeout: int = Field(120, ge=1, le=86400)

    # --- secrets ---
    # Comma-separated; the first encrypts, all decrypt (MultiFernet key rotation).
    encryption_key: Annotated[list[str], NoDecode] = []
    jwt_audience: str | None = None  # when set, tokens must carry this `aud`
    jwt_issuer: str | None = None  # when set, tokens must carry this `iss`
    jwt_leeway: int = Field(30, ge=0, le=600)  # seconds of clock skew tolerated

    # --- logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # --- feature flags ---
    enable_imap_sync: bool = True
    enable_smtp_send: bool = True
    enable_celery_tasks: bool = True
    enable_email_parsing: bool = True
    # Keep a copy of every draft in the account's IMAP Drafts folder, replaced on update.
    save_drafts_to_imap: bool = True
    # Seconds between a save and its copy: a draft sent (or changed again) by then is not
    # uploaded for nothing. 0 copies at once; at most 5 minutes, well under the broker's
    # visibility timeout (a countdown past it would be delivered again).
    draft_copy_delay_seconds: float = Field(5, ge=0, le=300)

    # --- rate limiting (per client IP, plus per tenant) ---
    rate_limit_enabled: bool = True
    rate_limit_requests_per_minute: int = Field(60, ge=1)
    rate_limit_requests_per_hour: int = Field(1000, ge=1)
    # All of one tenant's requests per minute, whatever their IPs (one tenant cannot starve
    # the others); 10x the per-IP default, as a tenant's users come from many addresses.
    rate_limit_tenant_requests_per_minute: int = Field(600, ge=1)
    # Reverse proxies in front of the API that append to X-Forwarded-For: the client IP is
    # the entry this many hops from the right. 0: trust none, the client is the socket peer.
    trusted_proxies: int = Field(0, ge=0, le=10)

    # --- multi-tenancy ---
    tenant_id_header: str = Field("X-Tenant-ID", pattern=r"^[A-Za-z0-9-]{1,64}$")
    default_tenant_id: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

    # --- where things live ---
    data_dir: Path = Path("data")  # SQLite, blobs, drafts, generated dev secrets
    log_dir: Path = Path("logs")  # access.log, error.log, email-service.log
    # Prometheus multiprocess files of the API's and workers' processes; unset: DATA_DIR/metrics.
    metrics_dir: Path | None = None
    # A Celery worker serves its processes' metrics on this port at /metrics (0: off).
    celery_metrics_port: int = Field(0, ge=0, le=65535)
    max_request_bytes: int = Field(25 * 1024 * 1024, ge=1024)  # request body cap
    # Largest attachment upload; base64 makes it ~1.37x on the wire (Postfix: 35 MB by default).
    max_attachment_bytes: int = Field(20 * 1024 * 1024, ge=1)
    service_version: str = "1.0.0"

    # --- sending (outbox) ---
    # Attempts on temporary SMTP trouble (4xx, timeouts) before a message is marked failed.
    send_max_attempts: int = Field(8, ge=1, le=100)
    # Back-off before retry n: base * 2**(n-1), capped, jittered (below Celery's visibility).
    send_retry_base_seconds: float = Field(30, gt=0, le=3600)
    send_retry_max_seconds: float = Field(600, gt=0, le=14 * 60)
    # A send in progress holds its row this long; an expired lease means the worker died.
    send_lease_seconds: int = Field(300, ge=1, le=24 * 3600)

    @field_validator("cors_origins", "allowed_mail_hosts", "encryption_key", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("imap_host", "smtp_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a host name or address without spaces")
        return value

    @field_validator("allowed_mail_hosts")
    @classmethod
    def _allowed(cls, value: list[str]) -> list[str]:
        for entry in value:
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)  # ValueError names the bad CIDR
        return value

    @field_validator("database_url", "redis_url", "celery_broker_url", "celery_result_backend")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        if value is not None and "://" not in value:
            raise ValueError("must be a URL such as scheme://host/...")
        return value

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.flask_env != "production":
            return self
        if not self.jwt_secret or _looks_default(self.jwt_secret):
            raise ValueError(
                "JWT_SECRET: FLASK_ENV=production needs a real secret "
                f"(at least {MIN_SECRET_LENGTH} random characters)"
            )
        if not self.encryption_key or any(_looks_default(k) for k in self.encryption_key):
            raise ValueError(
                "ENCRYPTION_KEY: FLASK_ENV=production needs a real key "
                "(a Fernet key from `email-service rotate-key --generate`)"
            )
        return self

    # --- derived ---
    @property
    def embedded(self) -> bool:
        """True when running without Redis: in-process jobs, memory limits."""
        return self.redis_url is None and self.celery_broker_url is None

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql://" + url.removeprefix("postgres://")
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{(self.data_dir / 'email-service.db').resolve()}"

    @property
    def broker_url(self) -> str | None:
        """Celery broker: CELERY_BROKER_URL, else REDIS_URL."""
        return self.celery_broker_url or self.redis_url

    @property
    def result_backend(self) -> str | None:
        """Celery result backend: CELERY_RESULT_BACKEND, else REDIS_URL."""
        return self.celery_result_backend or self.redis_url

    @property
    def metrics_path(self) -> Path:
        """Root of the Prometheus multiprocess files: METRICS_DIR, else DATA_DIR/metrics."""
        return self.metrics_dir or self.data_dir / "metrics"

    @property
    def cors_origin_urls(self) -> list[str]:
        """CORS_ORIGINS as exact origins (scheme://host[:port])."""
        origins: list[str] = []
        for entry in self.cors_origins:
            if "://" in entry:
                origins.append(entry.rstrip("/"))
            else:
                origins += [f"http://{entry}", f"https://{entry}"]
        return origins


def _looks_default(secret: str) -> bool:
    lowered = secret.lower()
    return len(secret) < MIN_SECRET_LENGTH or any(w in lowered for w in PLACEHOLDER_WORDS)


def load_settings(**overrides: object) -> Settings:
    """Read settings; raise ConfigError with one line naming the variable on bad input."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]).upper() if err["loc"] else ""
    message = str(err["msg"]).removeprefix("Value error, ")
    if not name:
        return f"invalid configuration: {message}"
    shown = os.environ.get(name)
    got = (
        f" (got {shown!r})"
        if shown is not None and "SECRET" not in name and "KEY" not in name
        else ""
    )
    return f"invalid configuration: {name}: {message}{got}"


def with_generated_secrets(settings: Settings, warn: Callable[[str], None]) -> Settings:
    """Fill a missing JWT_SECRET/ENCRYPTION_KEY from files in DATA_DIR, creating them once.

    Never in production (the validator has refused that already). Files are 0600 and
    created with O_EXCL, so concurrent starters agree on one value.
    """
    updates: dict[str, object] = {}
    if not settings.jwt_secret:
        updates["jwt_secret"] = _read_or_create(
            settings.data_dir / "jwt_secret", lambda: secrets.token_urlsafe(48), warn
        )
    if not settings.encryption_key:
        key = _read_or_create(
            settings.data_dir / "encryption_key", lambda: Fernet.generate_key().decode(), warn
        )
        updates["encryption_key"] = [key]
    return settings.model_copy(update=updates) if updates else settings


def _read_or_create(path: Path, make: Callable[[], str], warn: Callable[[str], None]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be between create and write
            value = path.read_text().strip()
            if value:
                return value
            time.sleep(0.02)
        raise ConfigError(
            f"invalid configuration: {path} is empty; delete it to regenerate"
        ) from None
    value = make()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    warn(f"generated {path.name.upper()} into {path} (development only; set it in production)")
    return value
