"""The ``email-service`` command: serve, worker, beat, migrate, token, accounts, rotate-key."""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

# Heavy modules (SQLAlchemy, Alembic, Flask, Celery) are imported inside the commands that
# need them: `email-service sync` and `token` start in a fraction of the time.
if TYPE_CHECKING:
    from email_service.config import Settings
    from email_service.services.runtime import Runtime

SECURITY_CHOICES = ["ssl", "starttls", "none"]
REPO_ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = REPO_ROOT / "deploy" / "gunicorn.conf.py"


def _settings() -> Settings:
    """Settings with development secrets filled in; one-line exit on bad configuration."""
    from email_service.config import load_settings, with_generated_secrets
    from email_service.errors import ConfigError
    from email_service.observability.logging import configure_logging

    try:
        settings = load_settings()
        configure_logging(settings.log_level, None)
        return with_generated_secrets(settings, logging.getLogger("email_service").warning)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def _runtime() -> Runtime:
    from email_service.errors import ConfigError
    from email_service.services.runtime import Runtime

    try:
        return Runtime.build(_settings())
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def _exec(argv: list[str]) -> NoReturn:
    program = shutil.which(
        argv[0], path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    )
    if program is None:
        raise click.ClickException(f"{argv[0]} not found next to {sys.executable}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(program, [program, *argv[1:]])  # noqa: S606 - replaces this process, no shell


@click.group()
@click.version_option(package_name="email-service")
def main() -> None:
    """Multi-tenant email backend."""


@main.command()
def serve() -> None:
    """Run the API under Gunicorn (gthread) with the environment's settings."""
    settings = _runtime().settings  # every check a worker would make, before forking any
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    config = os.environ.get("GUNICORN_CONFIG", str(GUNICORN_CONFIG))
    host = "127.0.0.1" if settings.flask_host in ("0.0.0.0", "::") else settings.flask_host  # noqa: S104
    url = f"http://{host}:{settings.flask_port}"
    if settings.flask_env == "development":  # a person at a terminal: plain hints
        click.echo(f"email-service listening on {url}", err=True)
        click.echo(f"mint a token with: {_token_hint(settings)}", err=True)
    else:  # production output is JSON lines only, for log collectors
        logging.getLogger("email_service").info("email-service listening on %s", url)
    os.environ.setdefault("JWT_SECRET", settings.jwt_secret or "")
    os.environ.setdefault("ENCRYPTION_KEY", ",".join(settings.encryption_key))
    _exec(["gunicorn", "--config", config, "email_service.wsgi:app"])


def _token_hint(settings: Settings) -> str:
    """The exact command that mints a token for this server's secret."""
    env = []
    if settings.flask_env == "development":
        env.append("FLASK_ENV=development")
    if settings.data_dir != Path("data") and "JWT_SECRET" not in os.environ:
        env.append(f"DATA_DIR={settings.data_dir}")
    program = Path(sys.argv[0])
    shown = program.relative_to(Path.cwd()) if program.is_relative_to(Path.cwd()) else program
    return " ".join([*env, str(shown), "token", "--tenant", settings.default_tenant_id])


@main.command()
@click.option("--concurrency", "-c", type=int, default=4, show_default=True)
def worker(concurrency: int) -> None:
    """Run a Celery worker for the service's tasks."""
    settings = _settings()
    if settings.celery_metrics_port:  # the pool's processes share one metrics directory
        from email_service.observability import metrics_files

        metrics_files.prepare(settings.metrics_path / f"worker-{settings.celery_metrics_port}")
    _exec(
        [
            "celery",
            "-A",
            "email_service.jobs.app:celery_app",
            "--quiet",  # no banner: every output line is a JSON log line
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            settings.log_level,
        ]
    )


@main.command()
def beat() -> None:
    """Run Celery beat (periodic sync, due scheduled sends)."""
    settings = _settings()
    schedule = settings.data_dir / "celerybeat-schedule"
    _exec(
        [
            "celery",
            "-A",
            "email_service.jobs.app:celery_app",
            "beat",
            "--schedule",
            str(schedule),
            "--loglevel",
            "INFO",
        ]
    )


@main.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from email_service.store import migrate as migrations

    runtime = _runtime()
    migrations.upgrade(runtime.db.engine)
    click.echo(f"database at revision {migrations.current(runtime.db.engine)}")


@main.command()
@click.option("--tenant", "tenants", multiple=True, required=True, help="repeat for several")
@click.option("--sub", default="cli", show_default=True, help="subject (who the token is for)")
@click.option("--ttl", type=int, default=24 * 3600, show_default=True, help="seconds")
def token(tenants: tuple[str, ...], sub: str, ttl: int) -> None:
    """Print a JWT for the given tenant(s), signed with JWT_SECRET."""
    from email_service.errors import EmailServiceError
    from email_service.security import tokens

    settings = _settings()
    assert settings.jwt_secret is not None
    try:
        click.echo(
            tokens.mint(
                settings.jwt_secret,
                list(tenants),
                sub,
                ttl,
                settings.jwt_audience,
                settings.jwt_issuer,
            )
        )
    except EmailServiceError as exc:
        raise click.ClickException(exc.message) from None


@main.group()
def accounts() -> None:
    """Manage accounts from the command line."""


@accounts.command("add")
@click.option("--tenant", required=True)
@click.option("--email", required=True)
@click.option("--password", help="read from a prompt (or $EMAIL_PASSWORD) when omitted")
@click.option("--display-name")
@click.option("--username")
@click.option("--imap-host")
@click.option("--imap-port", type=int)
@click.option("--imap-security", type=click.Choice(SECURITY_CHOICES))
@click.option("--smtp-host")
@click.option("--smtp-port", type=int)
@click.option("--smtp-security", type=click.Choice(SECURITY_CHOICES))
def accounts_add(
    tenant: str, email: str, password: str | None, **options: str | int | None
) -> None:
    """Register a mailbox for a tenant."""
    from email_service.config import Security
    from email_service.errors import EmailServiceError
    from email_service.services import accounts as account_service

    password = password or os.environ.get("EMAIL_PASSWORD") or getpass.getpass("password: ")
    for key in ("imap_security", "smtp_security"):
        if options[key] is not None:
            options[key] = Security(str(options[key]))
    runtime = _runtime()
    fields = account_service.AccountFields(email=email, password=password, **options)  # type: ignore[arg-type]
    try:
        with runtime.db.session() as session:
            record = account_service.create_account(
                session, tenant, fields, runtime.vault, runtime.hosts
            )
    except EmailServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{record.id}\t{record.email}")


@accounts.command("list")
@click.option("--tenant", required=True)
def accounts_list(tenant: str) -> None:
    """List a tenant's accounts (id, email, IMAP server, status)."""
    from email_service.services import accounts as account_service

    runtime = _runtime()
    cursor: str | None = None
    with runtime.db.session() as session:
        while True:
            page = account_service.list_accounts(session, tenant, 500, cursor)
            for r in page.items:
                click.echo(f"{r.id}\t{r.email}\t{r.imap_host}:{r.imap_port}\t{r.status}")
            if not (cursor := page.next_cursor):
                break


@main.command()
@click.argument("account_id")
@click.option("--foreground", is_flag=True, required=True, help="run here, not on a worker")
@click.option("--quiet", is_flag=True, help="no progress bar, only the summary line")
def sync(account_id: str, foreground: bool, quiet: bool) -> None:
    """Sync one account in this process, with progress, and print a summary line."""
    from email_service.errors import EmailServiceError
    from email_service.services import accounts as account_service
    from email_service.services.sync.run import run_sync

    runtime = _runtime()
    try:
        wanted = uuid.UUID(account_id)
    except ValueError:
        raise click.BadParameter(f"{account_id!r} is not an account id") from None
    with runtime.db.session() as session:
        tenant = account_service.tenant_of(session, wanted)
    bars = ProgressBars(disabled=quiet)
    try:
        report = run_sync(runtime, tenant, wanted, f"cli-{os.getpid()}", bars.update)
    except EmailServiceError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        bars.close()
    megabytes = report.bytes / 1e6
    rate = report.new_messages / report.seconds if report.seconds else 0.0
    rekeyed = f", {report.remapped} re-keyed (UIDVALIDITY)" if report.remapped else ""
    click.echo(
        f"synced {report.new_messages} messages, {megabytes:.1f} MB in "
        f"{report.seconds:.2f} s ({rate:.0f} msgs/s); {report.flag_updates} flag "
        f"updates, {report.deleted} deleted{rekeyed}, {report.folders} folders"
    )


class ProgressBars:
    """One tqdm bar per folder: messages done of total, with MB."""

    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled
        self.bars: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}

    def update(self, folder: str, done: int, total: int, size: int) -> None:
        """Move the folder's bar to ``done`` of ``total``."""
        bar = self.bars.get(folder)
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(
                total=total,
                desc=folder[:24],
                unit="msg",
                disable=self.disabled,
                file=sys.stderr,
                leave=True,
            )
            self.bars[folder], self.sizes[folder] = bar, 0
        self.sizes[folder] += size
        bar.total = max(total, done)
        bar.n = done
        bar.set_postfix_str(f"{self.sizes[folder] / 1e6:.1f} MB", refresh=True)

    def close(self) -> None:
        """Finish every bar."""
        for bar in self.bars.values():
            bar.close()


@main.command("rotate-key")
@click.option(
    "--generate", is_flag=True, help="only print a new key to put first in ENCRYPTION_KEY"
)
def rotate_key(generate: bool) -> None:
    """Re-encrypt every stored credential with the first ENCRYPTION_KEY."""
    from email_service.security.crypto import generate_key
    from email_service.services import accounts as account_service

    if generate:
        click.echo(generate_key())
        return
    runtime = _runtime()
    with runtime.db.session() as session:
        rotated, total = account_service.rotate_keys(session, runtime.vault)
    click.echo(f"re-encrypted {rotated}/{total} rows under key {runtime.vault.primary_key_id}")
