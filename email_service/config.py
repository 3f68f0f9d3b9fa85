"""Settings: every variable of docs/configuration.md, typed, validated and defaulted.

Read from the environment (and a ``.env`` file in the working directory, if any).
Unknown values stop start-up with one line naming the variable: see :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from cryptography.fernet import Fernet
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from email_service.errors import ConfigError
from email_service.files import private_dir
from email_service.security import interpreter, strength
from email_service.security.crypto import is_fernet_key

# Words that mark a secret as a placeholder copied from documentation.
PLACEHOLDER_WORDS = ("change", "your-", "example", "placeholder", "secret-key", "default")
# HS256 keys shorter than the hash output weaken the MAC (RFC 7518 §3.2).
MIN_SECRET_LENGTH = 32


class Security(StrEnum):
    """How a mail connection is protected."""

    SSL = "ssl"  # TLS from the first byte (IMAPS 993, SMTPS 465)
    STARTTLS = "starttls"  # plaintext greeting, then STARTTLS (RFC 2595, RFC 3207)
    NONE = "none"  # plaintext; only when an account asks for it


class OAuthProviderSettings(BaseModel):
    """One OAuth2 provider in OAUTH_PROVIDERS; unset fields come from the preset or discovery."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["google", "microsoft", "oidc"] | None = None  # unset: the provider's name
    label: str | None = Field(None, max_length=64)  # the web client's button; unset: derived
    client_id: str = Field(min_length=1)
    client_secret: str | None = None  # unset: a public client (PKCE only)
    issuer: str | None = None  # OIDC discovery at <issuer>/.well-known/openid-configuration
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    scopes: list[str] | None = None
    imap_host: str | None = None
    imap_port: int | None = Field(None, ge=1, le=65535)
    imap_security: Security | None = None
    smtp_host: str | None = None
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_security: Security | None = None


# Compose mounts secrets here, one file per setting (jwt_secret, encryption_key, ...).
DEFAULT_SECRETS_DIR = Path("/run/secrets")


def secrets_dir() -> Path | None:
    """Where settings are read from files: SECRETS_DIR, else /run/secrets if present."""
    given = os.environ.get("SECRETS_DIR")
    if given:
        return Path(given)
    return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None


def _with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in its authority, unless it has one already."""
    parts = urlsplit(url)
    if parts.password is not None:
        return url
    user = quote(unquote(parts.username or ""), safe="")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


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
    # Passwords kept out of the URLs above (compose: files in /run/secrets): each is put
    # into every URL of its server that names none.
    database_password: str | None = None
    redis_password: str | None = None
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
    # A blob no row refers to is removed once it is this old: longer than any write takes
    # from storing a blob to committing its row (a sweep never takes one from its writer).
    blob_grace_seconds: int = Field(3600, ge=0)
    # How often the sweeper finishes deletions and collects unreferenced blobs.
    blob_sweep_interval_seconds: int = Field(3600, ge=10)
    # Where raw MIME and uploads live: unset, files under DATA_DIR/blobs (one host); or
    # s3://bucket/prefix, an S3-compatible object store shared by every host.
    blob_store_url: str | None = Field(
        None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
    )
    s3_endpoint_url: str | None = None  # e.g. http://seaweedfs:8333; unset: AWS S3
    s3_access_key: str | None = None  # credentials of the object store
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"  # signing region (S3-compatible servers accept this one)
    # Processes that parse a large sync's messages (unset: one per core; 0: parse inline).
    sync_parse_processes: int | None = Field(None, ge=0, le=64)
    # Minutes between beat's syncs of every active account.
    sync_interval_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    # A running sync renews its account lock; a dead worker's lock frees after this.
    sync_lock_ttl_seconds: int = Field(300, ge=2, le=24 * 3600)
    # Most syncs beat queues per tick (a minute): 500 x 60 ticks covers 30,000 accounts an
    # hour at the default interval, most overdue first, and keeps a tick near half a second
    # (bench/schedule).
    sync_due_batch: int = Field(500, ge=1, le=100_000)
    # A search's statements stop after this many seconds (0: no limit of ours).
    search_timeout_seconds: float = Field(10, ge=0, le=3600)
    # Non-public hosts/CIDRs accounts may point at (public addresses are always allowed).
    allowed_mail_hosts: Annotated[list[str], NoDecode] = []

    # --- staying current: change log, event stream, webhooks ---
    # Change-log rows are kept this many hours; an older state answers cannot_calculate_changes.
    change_log_retention_hours: int = Field(7 * 24, ge=1, le=366 * 24)
    # The events process (`email-service events`, SSE at /api/events) listens here.
    events_host: str = "127.0.0.1"
    events_port: int = Field(5001, ge=1, le=65535)
    # `serve` also runs the events server in its worker (the embedded default); unset: only
    # when embedded (no Redis), where no separate events process is deployed.
    events_embedded: bool | None = None
    # Seconds between an events process's looks at the change log for new rows.
    events_poll_seconds: float = Field(0.5, gt=0, le=60)
    # Seconds between SSE heartbeat comments on an idle stream (proxies drop silent ones).
    events_heartbeat_seconds: float = Field(15, gt=0, le=300)
    # Non-public hosts/CIDRs webhook URLs may point at (public addresses are always allowed).
    allowed_webhook_hosts: Annotated[list[str], NoDecode] = []
    # Non-public hosts/CIDRs a one-click unsubscribe URL may point at (RFC 8058 POSTs).
    allowed_unsubscribe_hosts: Annotated[list[str], NoDecode] = []
    # Seconds a list's one-click unsubscribe endpoint has to answer.
    unsubscribe_timeout_seconds: float = Field(10, gt=0, le=60)
    # Extra CA bundle for one-click unsubscribe endpoints (a private CA); system CAs otherwise.
    unsubscribe_ca_file: Path | None = None
    # Seconds a webhook receiver has to answer before the attempt counts as failed.
    webhook_timeout_seconds: float = Field(10, gt=0, le=120)
    # Retries of a delivery back off exponentially (jittered) from here, capped, for ~24 h.
    webhook_retry_base_seconds: float = Field(5, gt=0, le=3600)
    webhook_retry_max_seconds: float = Field(3600, gt=0, le=24 * 3600)
    webhook_max_age_hours: float = Field(24, gt=0, le=14 * 24)  # then the delivery has failed
    # An endpoint whose deliveries have failed for this long is disabled.
    webhook_disable_after_hours: float = Field(72, gt=0, le=90 * 24)
    # Seconds between looks for new events and due retries (beat, or the embedded ticker).
    webhook_dispatch_seconds: float = Field(2, gt=0, le=600)

    # --- Gunicorn ---
    gunicorn_workers: int = Field(4, ge=1, le=256)
    gunicorn_threads: int = Field(2, ge=1, le=1024)
    gunicorn_timeout: int = Field(120, ge=1, le=86400)

    # --- secrets ---
    # Comma-separated; the first encrypts, all decrypt (MultiFernet key rotation).
    encryption_key: Annotated[list[str], NoDecode] = []
    # scrypt salt for ENCRYPTION_KEY passphrases, one per deployment (unset in development:
    # generated into DATA_DIR when a passphrase is used; required with one in production).
    encryption_salt: str | None = Field(None, min_length=16)
    jwt_audience: str | None = None  # when set, tokens must carry this `aud`
    jwt_issuer: str | None = None  # when set, tokens must carry this `iss`
    jwt_leeway: int = Field(30, ge=0, le=600)  # seconds of clock skew tolerated
    # Longest token lifetime (exp - iat) accepted and minted; revocations are kept this long.
    jwt_max_ttl_seconds: int = Field(24 * 3600, ge=60, le=366 * 24 * 3600)
    # Start in production on a Python without the CVE-2024-4032/-6923 fixes (logged instead).
    allow_unpatched_python: bool = False

    # --- logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # --- feature flags ---
    enable_imap_sync: bool = True
    # A new account (POST /api/accounts) starts its first sync at once, newest mail first.
    sync_on_create: bool = True
    enable_smtp_send: bool = True
    enable_celery_tasks: bool = True
    enable_email_parsing: bool = True
    # Keep a copy of every draft in the account's IMAP Drafts folder, replaced on update.
    save_drafts_to_imap: bool = True
    # Seconds between a save and its copy: a draft sent (or changed again) by then is not
    # uploaded for nothing. 0 copies at once; at most 5 minutes, well under the broker's
    # visibility timeout (a countdown past it would be delivered again).
    draft_copy_delay_seconds: float = Field(5, ge=0, le=300)

    # --- push (IMAP IDLE/NOTIFY watchers) ---
    # Watch active accounts over IDLE and queue a folder sync on every change they report.
    enable_imap_push: bool = True
    # A watcher's hold on an account; a watcher killed without a word loses it after this.
    watch_lease_seconds: int = Field(30, ge=3, le=3600)
    # IDLE is re-issued this often (RFC 2177 §3: servers may drop a client idle 30 min).
    imap_idle_renew_seconds: int = Field(25 * 60, ge=10, le=29 * 60)
    # `email-service watch` serves its metrics on this port at /metrics (0: off).
    watch_metrics_port: int = Field(0, ge=0, le=65535)

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
    # Socket peers (addresses or CIDRs: the proxy's network) whose X-Forwarded-* are read.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = ["127.0.0.1", "::1"]

    # --- OAuth2 mailboxes (docs/oauth2.md) ---
    # JSON object: provider name -> settings (presets "google", "microsoft"; others OIDC).
    oauth_providers: Annotated[dict[str, OAuthProviderSettings], NoDecode] = {}
    # The public URL of GET /api/oauth/callback, registered at each provider.
    oauth_redirect_url: str | None = None
    # Access tokens are refreshed this many seconds before they expire.
    oauth_refresh_margin_seconds: int = Field(300, ge=0, le=3600)
    # An authorization request (its state) must come back within this many seconds.
    oauth_state_ttl_seconds: int = Field(600, ge=30, le=3600)
    # One process refreshes an account's tokens at a time; its lease lasts this long.
    oauth_refresh_lock_seconds: int = Field(30, ge=2, le=600)

    # --- multi-tenancy ---
    tenant_id_header: str = Field("X-Tenant-ID", pattern=r"^[A-Za-z0-9-]{1,64}$")
    default_tenant_id: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

    # --- where things live ---
    data_dir: Path = Path("data")  # SQLite, blobs, drafts, generated dev secrets
    log_dir: Path = Path("logs")  # access.log, error.log, email-service.log
    # Prometheus multiprocess files of the API's and workers' processes; unset: DATA_DIR/metrics.
    metrics_dir: Path | None = None
    # Bearer token for GET /metrics; unset: /metrics is off in production, open in development.
    metrics_token: str | None = None
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then .env, then secrets files (compose)."""
        directory = secrets_dir()
        files = (
            SecretsSettingsSource(settings_cls, secrets_dir=directory)
            if directory
            else file_secret_settings
        )
        return init_settings, env_settings, dotenv_settings, files

    @field_validator(
        "cors_origins",
        "allowed_mail_hosts",
        "allowed_webhook_hosts",
        "allowed_unsubscribe_hosts",
        "encryption_key",
        "forwarded_allow_ips",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("oauth_providers", mode="before")
    @classmethod
    def _providers_json(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("imap_host", "smtp_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a host name or address without spaces")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("allowed_mail_hosts", "allowed_webhook_hosts", "allowed_unsubscribe_hosts")
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
    def _passwords_into_urls(self) -> Settings:
        if self.database_password and self.database_url:
            self.database_url = _with_password(self.database_url, self.database_password)
        if self.redis_password:
            for name in ("redis_url", "celery_broker_url", "celery_result_backend"):
                url = getattr(self, name)
                if url and url.startswith(("redis://", "rediss://")):
                    setattr(self, name, _with_password(url, self.redis_password))
        return self

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.flask_env != "production":
            return self
        weak = _weakness(self.jwt_secret) if self.jwt_secret else "unset"
        if weak:
            raise ValueError(
                f"JWT_SECRET: FLASK_ENV=production needs a real secret ({weak}); e.g. "
                'python3 -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        if not self.encryption_key:
            raise ValueError("ENCRYPTION_KEY: FLASK_ENV=production needs a real key (unset)")
        for key in self.encryption_key:
            weak = _weakness(key)
            if weak:
                raise ValueError(
                    f"ENCRYPTION_KEY: FLASK_ENV=production needs a real key ({weak}); "
                    "a Fernet key from `email-service rotate-key --generate`"
                )
        if not self.encryption_salt and not all(is_fernet_key(k) for k in self.encryption_key):
            raise ValueError(
                "ENCRYPTION_SALT: an ENCRYPTION_KEY passphrase needs this deployment's own "
                "salt (16+ random characters, the same on every replica)"
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
    def encryption_salt_bytes(self) -> bytes | None:
        """ENCRYPTION_SALT as bytes for scrypt (None: the fixed salt of earlier versions)."""
        return self.encryption_salt.encode() if self.encryption_salt else None

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
        """CORS_ORIGINS as exact origins (scheme://host[:port]); in production only the ones
        set explicitly (the development default admits none there)."""
        if self.flask_env == "production" and "cors_origins" not in self.model_fields_set:
            return []
        origins: list[str] = []
        for entry in self.cors_origins:
            if "://" in entry:
                origins.append(entry.rstrip("/"))
            else:
                origins += [f"http://{entry}", f"https://{entry}"]
        return origins


def _weakness(secret: str) -> str | None:
    """Why a production secret is refused: a placeholder, too short, or guessable."""
    lowered = secret.lower()
    if any(w in lowered for w in PLACEHOLDER_WORDS):
        return "a placeholder from the documentation"
    if len(secret) < MIN_SECRET_LENGTH and not is_fernet_key(secret):
        return f"under {MIN_SECRET_LENGTH} characters"
    return strength.weakness(secret)


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
    created with O_EXCL, so concurrent starters agree on one value. Every process passes
    here first, so this is also where an unpatched interpreter is refused in production.
    """
    check_interpreter(settings)
    updates: dict[str, object] = {}
    if not settings.jwt_secret:
        updates["jwt_secret"] = _read_or_create(
            settings.data_dir / "jwt_secret", lambda: secrets.token_urlsafe(48), warn
        )
    keys = settings.encryption_key
    if not keys:
        keys = [
            _read_or_create(
                settings.data_dir / "encryption_key", lambda: Fernet.generate_key().decode(), warn
            )
        ]
        updates["encryption_key"] = keys
    if not settings.encryption_salt and not all(is_fernet_key(k) for k in keys):
        updates["encryption_salt"] = _read_or_create(
            settings.data_dir / "encryption_salt", lambda: secrets.token_urlsafe(24), warn
        )
    return settings.model_copy(update=updates) if updates else settings


def check_interpreter(settings: Settings) -> None:
    """Refuse (production) or log a warning about a Python without the fixes the service
    relies on (:mod:`email_service.security.interpreter`)."""
    found = interpreter.problems()
    if not found:
        return
    if settings.flask_env == "production" and not settings.allow_unpatched_python:
        raise ConfigError(
            f"invalid configuration: PYTHON: {'; '.join(found)}; upgrade Python, or set "
            "ALLOW_UNPATCHED_PYTHON=true to start anyway"
        )
    if settings.flask_env == "production":  # started anyway, as the operator allowed
        for problem in found:
            logging.getLogger("email_service").warning("unpatched Python: %s", problem)


def _read_or_create(path: Path, make: Callable[[], str], warn: Callable[[str], None]) -> str:
    private_dir(path.parent)
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
