"""``email-service accounts add --oauth PROVIDER``: the real command, the test authorization
server, Dovecot checking the token. The command listens on the loopback redirect URL."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from email_service.security.crypto import generate_key
from tests.conftest import JWT_SECRET
from tests.servers.oauth_provider import OAuthProvider
from tests.servers.ports import free_ports
from tests.servers.service import BIN, base_env, cli

pytestmark = pytest.mark.dovecot


def _env(tmp_path: Path, provider: OAuthProvider, dovecot: Any) -> dict[str, str]:
    redirect = f"http://127.0.0.1:{free_ports(1)[0]}/api/oauth/callback"
    client_id, secret = f"cli-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    provider.add_client(client_id, secret, [redirect])
    providers = {
        "idp": {
            "client_id": client_id,
            "client_secret": secret,
            "issuer": provider.issuer,
            "scopes": ["openid", "email", "mail", "offline_access"],
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.imap_port,
            "imap_security": "starttls",
            "smtp_host": "127.0.0.1",
            "smtp_port": 9,
            "smtp_security": "none",
        }
    }
    return base_env(
        tmp_path,
        JWT_SECRET=JWT_SECRET,
        ENCRYPTION_KEY=generate_key(),
        ALLOWED_MAIL_HOSTS="127.0.0.1/8",
        MAIL_CA_FILE=str(dovecot.ca_file),
        OAUTH_PROVIDERS=json.dumps(providers),
        OAUTH_REDIRECT_URL=redirect,
    )


def test_add_with_oauth_prints_the_url_and_takes_the_redirect(
    tmp_path: Path, oauth_provider: OAuthProvider, dovecot: Any
) -> None:
    user = dovecot.add_user(f"cli-{secrets.token_hex(4)}@example.test", "pw-unused-12")
    env = _env(tmp_path, oauth_provider, dovecot)
    cli(env, "migrate")
    proc = subprocess.Popen(
        [str(BIN / "email-service"), "accounts", "add", "--tenant", "t1", "--oauth", "idp"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith(oauth_provider.issuer + "/authorize?"), url
        # the browser: consent at the provider, then its redirect to the command
        answer = requests.get(url + f"&login_hint={user.email}", timeout=30)
        assert answer.status_code == 200 and "received" in answer.text
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    account_id, email, checks = out.strip().split("\t")
    assert email == user.email and checks.startswith("imap ok")
    listed = cli(env, "accounts", "list", "--tenant", "t1").stdout
    assert account_id in listed and "active" in listed
    synced = cli(env, "sync", account_id, "--foreground", "--quiet")
    assert synced.stdout.startswith("synced"), synced.stderr


def test_add_with_an_access_token(
    tmp_path: Path, oauth_provider: OAuthProvider, dovecot: Any
) -> None:
    user = dovecot.add_user(f"cli-{secrets.token_hex(4)}@example.test", "pw-unused-12")
    env = _env(tmp_path, oauth_provider, dovecot)
    client_id = json.loads(env["OAUTH_PROVIDERS"])["idp"]["client_id"]
    token = oauth_provider.issue(user.email, client_id)
    cli(env, "migrate")
    added = cli(
        env,
        *("accounts", "add", "--tenant", "t1", "--email", user.email, "--oauth", "idp"),
        *("--access-token", token.access_token, "--refresh-token", str(token.refresh_token)),
        *("--expires-in", "300"),
    )
    account_id = added.stdout.split("\t")[0].strip()
    synced = cli(env, "sync", account_id, "--foreground", "--quiet")
    assert synced.stdout.startswith("synced"), synced.stderr
    assert token.access_token not in added.stdout + added.stderr + synced.stdout + synced.stderr
