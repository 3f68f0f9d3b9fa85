"""Secrets after a real run, and key rotation against the real Dovecot.

The run: `email-service serve` and a Celery worker at LOG_LEVEL=DEBUG over PostgreSQL and
Redis create accounts, fail an IMAP login and an SMTP AUTH, sync, search and send through
the real Postfix (STARTTLS + AUTH against Dovecot). Then every API answer, every file in
LOG_DIR, the processes' stdout/stderr, a `pg_dump` and every value in Redis are searched
for the passwords, their base64 (alone and as SASL PLAIN), the bearer token and the
service's own keys: 0 found.

Rotation: accounts stored under key K1, `email-service rotate-key` with ENCRYPTION_KEY=K2,K1,
then the service started with K2 alone: every row re-encrypted, every account syncs.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from email_service.config import Security, Settings
from email_service.mail import sasl
from email_service.security.crypto import generate_key
from email_service.services import accounts
from email_service.services.accounts import AccountFields
from email_service.services.runtime import Runtime
from email_service.store import migrate
from tests.conftest import JWT_SECRET
from tests.hardening import figures
from tests.hardening.stack import OWN_GROUP, SYNC_ENDED, Service, token
from tests.integration import oauth_stack
from tests.servers.postgres import pg_database, pg_problem, require_postgres
from tests.servers.redis import RedisServer
from tests.servers.service import cli
from tests.servers.wait import wait_for
from tests.support.mailgen import append, imap_login, make_message

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.dovecot, OWN_GROUP]
TENANT = "secrets-tenant"
REDIS_DB = 3  # the session Redis's database for this run (the shared service uses 0)


def _forms(email: str, password: str) -> set[str]:
    """A password, its base64, and the SASL PLAIN blob of the login that uses it."""
    plain = base64.b64encode(f"\0{email}\0{password}".encode()).decode()
    return {password, base64.b64encode(password.encode()).decode(), plain}


class Recorded:
    """API calls with one fixed token; every answer is kept."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.token = token(TENANT)
        self.answers: list[bytes] = []

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "X-Tenant-ID": TENANT}
        response = self.service.http.request(
            method, self.service.base + path, headers=headers, timeout=60, **kwargs
        )
        self.answers.append(b"".join(f"{k}: {v}\n".encode() for k, v in response.headers.items()))
        self.answers.append(response.content)
        return response

    def sync(self, account_id: str) -> dict[str, Any]:
        assert self("POST", f"/api/sync/imap/{account_id}").status_code == 202

        def done() -> dict[str, Any] | None:
            state = self("GET", f"/api/sync/status/{account_id}").json()
            return state if state["state"] in SYNC_ENDED else None

        result: dict[str, Any] = wait_for(done, "the sync", 120)
        return result


@pytest.fixture
def debug_service(
    tmp_path: Path, redis_server: RedisServer, postfix: Any, dovecot: Any, oauth_provider: Any
) -> Iterator[tuple[Service, str]]:
    """The service at DEBUG with a worker, trusting the test servers' CA; and its DB URL."""
    require_postgres()
    redis_url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis_lib.Redis.from_url(redis_url).flushdb()
    with pg_database() as url:
        svc = Service(
            tmp_path / "svc",
            url,
            LOG_LEVEL="DEBUG",
            REDIS_URL=redis_url,
            MAIL_CA_FILE=str(postfix.ca_file),
            **_oauth_env(oauth_provider, dovecot, postfix),
        )
        try:
            yield svc.start(worker=True), url
        finally:
            svc.stop()


def _oauth_env(provider: Any, dovecot: Any, postfix: Any) -> dict[str, str]:
    """OAUTH_* settings naming the test authorization server as provider "idp"."""
    conf = oauth_stack.provider_settings(provider, dovecot, postfix)
    idp = conf["oauth_providers"][oauth_stack.PROVIDER].model_dump(mode="json")
    return {
        "OAUTH_PROVIDERS": json.dumps({"idp": idp}),
        "OAUTH_REDIRECT_URL": conf["oauth_redirect_url"],
        "OAUTH_REFRESH_MARGIN_SECONDS": "30",
    }


def _oauth_accounts(api: Recorded, provider: Any, user: Any) -> dict[str, str]:
    """One account onboarded through authorize + callback, one with tokens about to expire
    (the worker refreshes them, storing a rotated refresh token); both synced."""
    started = api("POST", "/api/oauth/idp/authorize", json={"login_hint": user.email}).json()
    query = oauth_stack.consent(started["authorization_url"])
    done = api.service.http.get(f"{api.service.base}/api/oauth/callback?{query}", timeout=60)
    api.answers.append(done.content)
    assert done.status_code == 200, done.text
    client_id = json.loads(api.service.env["OAUTH_PROVIDERS"])["idp"]["client_id"]
    issued = provider.issue(user.email, client_id)
    body = {
        "email": f"tok-{user.email}",
        "username": user.email,
        "oauth": {
            "access_token": issued.access_token,
            "refresh_token": issued.refresh_token,
            "expires_in": 1,
            "provider": "idp",
        },
    }
    created = api("POST", "/api/accounts", json=body)
    assert created.status_code == 201, created.text
    return {"oauth": done.json()["account"]["id"], "oauth-tok": created.json()["id"]}


def _token_forms(provider: Any, emails: set[str]) -> set[str]:
    """Every token the provider issued to these users, alone and as a SASL message."""
    forms: set[str] = set()
    for issued in provider.tokens:
        if issued.user not in emails:
            continue
        for value in (issued.access_token, issued.refresh_token):
            if value:
                forms |= {value, base64.b64encode(value.encode()).decode()}
        token = sasl.BearerToken(issued.access_token)  # XOAUTH2 has no host/port: exact
        message = sasl.initial_response("XOAUTH2", issued.user, token, "", 0)
        forms.add(base64.b64encode(message.encode()).decode())
    return forms


def _sources(service: Service, database: str, api: Recorded) -> dict[str, bytes]:
    logs = b"".join(p.read_bytes() for p in sorted(service.log_dir.rglob("*")) if p.is_file())
    outputs = b"".join(p.read_bytes() for p in sorted(service.root.glob("*.out")))
    dump = subprocess.run(
        [shutil.which("pg_dump") or "pg_dump", "--data-only", database],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return {
        "API answers": b"\n".join(api.answers),
        "LOG_DIR files": logs,
        "stdout/stderr of serve and worker": outputs,
        "pg_dump": dump,
        "Redis values": _redis_values(service.env["REDIS_URL"]),
    }


def _redis_values(url: str) -> bytes:
    client = redis_lib.Redis.from_url(url)
    found = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"string":
            found.append(client.get(key) or b"")
        elif kind == b"list":
            found += client.lrange(key, 0, -1)
        elif kind == b"hash":
            found += [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == b"set":
            found += list(client.smembers(key))
        elif kind == b"zset":
            found += client.zrange(key, 0, -1)
        found.append(key)
    return b"\n".join(found)


def test_no_secret_in_answers_logs_dump_or_redis(
    debug_service: tuple[Service, str],
    dovecot: Any,
    postfix: Any,
    fresh_user: Any,
    oauth_provider: Any,
) -> None:
    service, database = debug_service
    api = Recorded(service)
    good, other = fresh_user("sec"), fresh_user("sec2")
    wrong_password = f"Wrong-{secrets.token_urlsafe(12)}"
    with imap_login(dovecot, good) as client:
        append(client, "INBOX", make_message(1, attachment=True))
    smtp = {"smtp_host": "127.0.0.1", "smtp_port": postfix.submission_port}
    accounts = {}
    for name, user, password in (
        ("good", good, good.password),
        ("other", other, other.password),
        ("wrong", good, wrong_password),
    ):
        body = {
            "email": f"{name}-{user.email}",
            "username": user.email,
            "password": password,
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.imap_port,
            "imap_security": "none",
            "smtp_security": "starttls",
            **smtp,
        }
        created = api("POST", "/api/accounts", json=body)
        assert created.status_code == 201, created.text
        accounts[name] = created.json()["id"]
    accounts |= _oauth_accounts(api, oauth_provider, good)
    states = {name: api.sync(account)["state"] for name, account in accounts.items()}
    expected = {"good": "ok", "other": "ok", "wrong": "auth_failed", "oauth": "ok"}
    assert states == expected | {"oauth-tok": "ok"}, states
    assert oauth_provider.refreshes(good.email) >= 1  # the short-lived token was renewed
    assert api("GET", "/api/sync/search", params={"query": "hello"}).status_code == 200
    sends = {}
    for name in ("good", "wrong", "oauth"):  # delivered, refused at SMTP AUTH, by token
        draft = api(
            "POST",
            "/api/compose",
            json={"account_id": accounts[name], "to": [other.email], "subject": "s", "body": "b"},
        )
        sends[name] = api("POST", f"/api/compose/send/{draft.json()['id']}").json()["id"]

    def settled() -> dict[str, str] | None:
        found = {n: api("GET", f"/api/outbox/{i}").json()["state"] for n, i in sends.items()}
        return found if all(s in ("sent", "failed") for s in found.values()) else None

    outcome = wait_for(settled, "the sends", 120)
    forbidden = _forms(good.email, good.password) | _forms(other.email, other.password)
    forbidden |= _forms(good.email, wrong_password)
    forbidden |= {api.token, JWT_SECRET, service.encryption_key}
    forbidden |= _token_forms(oauth_provider, {good.email})
    sources = _sources(service, database, api)
    found = {
        source: sum(data.count(secret.encode()) for secret in forbidden)
        for source, data in sources.items()
    }
    sizes = {source: len(data) for source, data in sources.items()}
    note = (
        f"{len(forbidden)} strings (3 passwords, base64, SASL PLAIN, the token, JWT_SECRET, "
        f"ENCRYPTION_KEY, every OAuth2 access/refresh token issued, base64, SASL XOAUTH2/"
        f"OAUTHBEARER) after create, OAuth2 onboarding and refresh, failed IMAP login, sync, "
        f"search, send via Postfix "
        f"(AUTH ok and refused: {outcome}) at LOG_LEVEL=DEBUG; bytes searched {sizes}"
    )
    for source, count in found.items():
        figures.zero("secrets", f"secrets in {source}", count, note)
    assert outcome == {"good": "sent", "wrong": "failed", "oauth": "sent"}, outcome
    assert sum(found.values()) == 0, found
    # The search sees ordinary data: the login name is where it should be.
    assert all(good.email.encode() in sources[s] for s in ("API answers", "pg_dump"))


def _accounts_under(database: str, key: str, users: list[Any], imap_port: int) -> list[str]:
    """Register the users' mailboxes with passwords sealed under ``key`` (as a service
    running with that key would); the account ids."""
    settings = Settings(
        _env_file=None,
        flask_env="development",
        database_url=database,  # type: ignore[call-arg]
        jwt_secret=JWT_SECRET,
        encryption_key=[key],
        allowed_mail_hosts=["127.0.0.1/8"],
    )
    runtime = Runtime.build(settings)
    migrate.upgrade(runtime.db.engine)
    ids = []
    with runtime.db.session() as session:
        for user in users:
            fields = AccountFields(
                email=user.email,
                password=user.password,
                imap_host="127.0.0.1",
                imap_port=imap_port,
                imap_security=Security.NONE,
            )
            record = accounts.create_account(session, TENANT, fields, runtime.vault, runtime.hosts)
            ids.append(str(record.id))
    runtime.db.dispose()
    return ids


@pytest.fixture
def rotation_db() -> Iterator[str]:
    problem = pg_problem()
    if problem:
        figures.skip("secrets", "key rotation: rows re-encrypted", problem)
    with pg_database() as url:
        yield url


def test_key_rotation_re_encrypts_every_row_and_every_account_still_logs_in(
    rotation_db: str, tmp_path: Path, dovecot: Any, fresh_user: Any
) -> None:
    old_key, new_key = generate_key(), generate_key()
    users = [fresh_user("rot") for _ in range(4)]
    for user in users:
        with imap_login(dovecot, user) as client:
            append(client, "INBOX", make_message(7))
    ids = _accounts_under(rotation_db, old_key, users, dovecot.imap_port)
    with psycopg.connect(rotation_db) as conn:
        sealed_before = dict(conn.execute("SELECT id, password_ciphertext FROM email_account"))
    after = Service(tmp_path / "after", rotation_db, ENCRYPTION_KEY=new_key)
    rotation = cli({**after.env, "ENCRYPTION_KEY": f"{new_key},{old_key}"}, "rotate-key")
    with psycopg.connect(rotation_db) as conn:
        rows = list(
            conn.execute("SELECT id, password_ciphertext, password_key_id FROM email_account")
        )
    changed = sum(sealed_before[row_id] != sealed for row_id, sealed, _ in rows)
    key_ids = {key_id for _, _, key_id in rows}
    after.start()
    try:
        states = [after.sync(TENANT, i)["state"] for i in ids]
    finally:
        after.stop()
    logged_in = states.count("ok")
    figures.record(
        "secrets",
        "key rotation: rows re-encrypted",
        f"{changed}/{len(rows)}",
        f"{len(rows)}/{len(rows)}",
        changed == len(rows) == len(ids) and len(key_ids) == 1,
        f"`email-service rotate-key` said: {rotation.stdout.strip()}",
    )
    figures.record(
        "secrets",
        "key rotation: accounts that sync from Dovecot with only the new key",
        f"{logged_in}/{len(ids)}",
        f"{len(ids)}/{len(ids)}",
        logged_in == len(ids),
        "the service started with ENCRYPTION_KEY=<new key> alone, one sync per account",
    )
    assert f"re-encrypted {len(ids)}/{len(ids)} rows" in rotation.stdout
    assert changed == len(rows) == len(ids) and len(key_ids) == 1
    assert states == ["ok"] * len(ids), states
