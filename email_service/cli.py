"""The ``email-service`` command: serve, worker, beat, watch, migrate, token, accounts, ..."""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from email_service.store.scope import tenant_scope

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


def _tenant_of(runtime: Runtime, account_id: uuid.UUID) -> str:
    """The tenant of an account named by id alone (the one lookup across tenants)."""
    from email_service.services import accounts as account_service

    with runtime.db.operator_session("cli: the tenant of an account given by id") as session:
        return account_service.tenant_of(session, account_id)


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
    from email_service.files import private_umask

    private_umask()  # DATA_DIR and LOG_DIR hold mail: private, in the programs run too


@main.command()
def serve() -> None:
    """Run the API under Gunicorn (gthread) with the environment's settings."""
    from email_service.files import private_dir

    settings = _runtime().settings  # every check a worker would make, before forking any
    private_dir(settings.log_dir)
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
def watch() -> None:
    """Hold IMAP IDLE/NOTIFY connections for a share of the accounts; queue folder syncs."""
    from email_service.errors import ConfigError
    from email_service.jobs import make_celery, push
    from email_service.jobs.queues import CeleryQueue

    runtime = _runtime()
    if not push.push_enabled(runtime):
        raise click.ClickException("push is off (ENABLE_IMAP_PUSH or ENABLE_IMAP_SYNC is false)")
    runtime.queue = CeleryQueue(make_celery(runtime.settings, publisher=True))
    try:
        push.run_watcher(runtime)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


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
def events() -> None:
    """Serve GET /api/events (Server-Sent Events) on EVENTS_HOST:EVENTS_PORT (uvicorn)."""
    from email_service.api import events as events_api

    runtime = _runtime()
    settings = runtime.settings
    click.echo(
        f"email-service events on http://{settings.events_host}:{settings.events_port}", err=True
    )
    events_api.serve(runtime, settings.events_host, settings.events_port)


@main.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from email_service.store import migrate as migrations

    runtime = _runtime()
    migrations.upgrade(runtime.db.engine)
    click.echo(f"database at revision {migrations.current(runtime.db.engine)}")


@main.command()
@click.option("--tenant", "tenants", multiple=True, help="repeat for several")
@click.option("--sub", default="cli", show_default=True, help="subject (who the token is for)")
@click.option("--ttl", type=int, default=24 * 3600, show_default=True, help="seconds")
@click.option("--revoke", metavar="JTI", help="revoke a token by its jti (or the token itself)")
def token(tenants: tuple[str, ...], sub: str, ttl: int, revoke: str | None) -> None:
    """Print a JWT for the given tenant(s), signed with JWT_SECRET; or revoke one."""
    from email_service.errors import EmailServiceError
    from email_service.security import tokens

    if revoke is not None:
        _revoke(revoke)
        return
    if not tenants:
        raise click.UsageError("give --tenant (repeat for several) or --revoke JTI")
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
                max_ttl=settings.jwt_max_ttl_seconds,
            )
        )
    except EmailServiceError as exc:
        raise click.ClickException(exc.message) from None


def _revoke(value: str) -> None:
    from email_service.security import tokens

    jti = tokens.unverified_jti(value) if value.count(".") == 2 else value.strip()
    if not jti or len(jti) > tokens.MAX_JTI_LENGTH:
        raise click.ClickException("--revoke needs a jti (1-128 characters) or a token with one")
    runtime = _runtime()
    if runtime.settings.redis_url is None and runtime.settings.database_url is None:
        from email_service.store import migrate as migrations

        migrations.upgrade(runtime.db.engine)  # the embedded default: SQLite may be new
    assert runtime.revoked is not None
    try:
        runtime.revoked.revoke(jti)
    except Exception as exc:  # noqa: BLE001 - Redis or the database: one line, not a trace
        raise click.ClickException(f"revocation not stored: {type(exc).__name__}: {exc}") from None
    kept = runtime.settings.jwt_max_ttl_seconds + runtime.settings.jwt_leeway
    click.echo(f"revoked jti {jti} (remembered for {kept} s, the longest a token lives)")


@main.group()
def accounts() -> None:
    """Manage accounts from the command line."""


@accounts.command("add")
@click.option("--tenant", required=True)
@click.option("--email", help="the mailbox (learned from the provider with --oauth)")
@click.option("--password", help="read from a prompt (or $EMAIL_PASSWORD) when omitted")
@click.option("--oauth", "oauth_provider", help="log in with OAuth2 through this provider")
@click.option("--access-token", help="with --oauth: a token you already have (no browser)")
@click.option("--refresh-token", help="with --access-token: renews it")
@click.option("--expires-in", type=int, help="with --access-token: seconds it stays valid")
@click.option("--display-name")
@click.option("--username")
@click.option("--imap-host")
@click.option("--imap-port", type=int)
@click.option("--imap-security", type=click.Choice(SECURITY_CHOICES))
@click.option("--smtp-host")
@click.option("--smtp-port", type=int)
@click.option("--smtp-security", type=click.Choice(SECURITY_CHOICES))
def accounts_add(
    tenant: str,
    email: str | None,
    password: str | None,
    oauth_provider: str | None,
    access_token: str | None,
    refresh_token: str | None,
    expires_in: int | None,
    **options: str | int | None,
) -> None:
    """Register a mailbox for a tenant (password, or OAuth2 with --oauth PROVIDER)."""
    from email_service.config import Security
    from email_service.errors import EmailServiceError
    from email_service.services import accounts as account_service
    from email_service.services.oauth import credentials

    runtime = _runtime()
    if oauth_provider and not access_token:
        from email_service.cli_oauth import add_with_oauth

        with tenant_scope(tenant):
            add_with_oauth(runtime, tenant, oauth_provider, email)
        return
    if not email:
        raise click.UsageError("--email is needed (unless --oauth learns it)")
    for key in ("imap_security", "smtp_security"):
        if options[key] is not None:
            options[key] = Security(str(options[key]))
    if access_token:
        fields = account_service.AccountFields(email=email, **options)  # type: ignore[arg-type]
        try:
            provider = credentials.check_provider(runtime.settings, oauth_provider)
        except EmailServiceError as exc:
            raise click.ClickException(exc.message) from None
        tokens = credentials.token_set(access_token, refresh_token, expires_in=expires_in)
        fields = credentials.with_provider_servers(fields, provider)
        fields = credentials.replace_fields(fields, tokens, oauth_provider)
    else:
        password = password or os.environ.get("EMAIL_PASSWORD") or getpass.getpass("password: ")
        fields = account_service.AccountFields(email=email, password=password, **options)  # type: ignore[arg-type]
    try:
        with tenant_scope(tenant), runtime.db.session() as session:
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
    with tenant_scope(tenant), runtime.db.session() as session:
        while True:
            page = account_service.list_accounts(session, tenant, 500, cursor)
            for r in page.items:
                click.echo(f"{r.id}\t{r.email}\t{r.imap_host}:{r.imap_port}\t{r.status}")
            if not (cursor := page.next_cursor):
                break


@accounts.command("export")
@click.argument("account_id")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--quiet", is_flag=True, help="no progress bar")
def accounts_export(account_id: str, file: str, quiet: bool) -> None:
    """Write the account's mail to FILE as an mbox (mboxrd; '-' for standard output)."""
    from tqdm import tqdm

    from email_service.errors import EmailServiceError
    from email_service.services.lifecycle import export

    runtime = _runtime()
    try:
        tenant = _tenant_of(runtime, uuid.UUID(account_id))
        with tenant_scope(tenant):
            total = export.count(runtime, tenant, uuid.UUID(account_id))
            with (
                click.open_file(file, "wb", atomic=file != "-") as out,
                tqdm(total=total, unit="msg", disable=quiet or file == "-", file=sys.stderr) as bar,
            ):
                for chunk in export.mbox(runtime, tenant, uuid.UUID(account_id)):
                    out.write(chunk)
                    bar.update(1)
    except (EmailServiceError, ValueError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from None


@main.group()
def tenants() -> None:
    """Operate on whole tenants."""


@tenants.command("purge")
@click.argument("tenant")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def tenants_purge(tenant: str, yes: bool) -> None:
    """Remove every row and blob of TENANT (run again, or sweep, to finish an interrupted one)."""
    from email_service.services.lifecycle import deletion

    if not yes:
        click.confirm(f"remove all accounts, mail and blobs of tenant {tenant!r}?", abort=True)
    with tenant_scope(tenant):
        report = deletion.purge_tenant(_runtime(), tenant)
    click.echo(json.dumps(report.as_dict()))


@main.command()
def sweep() -> None:
    """Finish interrupted deletions; remove blobs no row names (older than BLOB_GRACE_SECONDS)."""
    from email_service.services.lifecycle import deletion

    report = deletion.sweep(_runtime())
    click.echo(json.dumps(report.as_dict()))
    if report.errors:
        raise click.ClickException(f"{len(report.errors)} tenant(s) failed; see the log")


@main.command()
@click.argument("account_id")
@click.option("--foreground", is_flag=True, required=True, help="run here, not on a worker")
@click.option("--quiet", is_flag=True, help="no progress bar, only the summary line")
def sync(account_id: str, foreground: bool, quiet: bool) -> None:
    """Sync one account in this process, with progress, and print a summary line."""
    from email_service.errors import EmailServiceError
    from email_service.services.sync.run import run_sync

    runtime = _runtime()
    try:
        wanted = uuid.UUID(account_id)
    except ValueError:
        raise click.BadParameter(f"{account_id!r} is not an account id") from None
    tenant = _tenant_of(runtime, wanted)
    bars = ProgressBars(disabled=quiet)
    try:
        with tenant_scope(tenant):
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
    with runtime.db.operator_session("rotate-key: every tenant's credentials") as session:
        rotated, total = account_service.rotate_keys(session, runtime.vault)
    click.echo(f"re-encrypted {rotated}/{total} rows under key {runtime.vault.primary_key_id}")
