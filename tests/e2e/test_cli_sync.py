"""``email-service sync ACCOUNT --foreground``: the real command against the real Dovecot.

Its summary line is checked against what the server holds, run after run: a first sync,
a no-change resync, new mail and flag changes, and a folder re-created under a new
UIDVALIDITY (re-keyed, not fetched as new mail).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from email_service.security.crypto import generate_key
from tests.conftest import JWT_SECRET
from tests.servers.service import base_env, cli
from tests.support.mailgen import append, imap_login, make_message, recreate_folder, status

pytestmark = pytest.mark.dovecot

SUMMARY = re.compile(
    r"^synced (?P<new>\d+) messages, (?P<mb>[\d.]+) MB in (?P<seconds>[\d.]+) s "
    r"\((?P<rate>\d+) msgs/s\); (?P<flags>\d+) flag updates, (?P<deleted>\d+) deleted"
    r"(?:, (?P<rekeyed>\d+) re-keyed \(UIDVALIDITY\))?, (?P<folders>\d+) folders$"
)


def _summary(run: Any) -> dict[str, int]:
    lines = run.stdout.strip().splitlines()
    assert lines, run.stderr
    found = SUMMARY.match(lines[-1])
    assert found is not None, lines[-1]
    numbers = {k: v for k, v in found.groupdict().items() if k not in {"mb", "seconds"}}
    return {k: int(v or 0) for k, v in numbers.items()}


def test_sync_command_summaries_follow_the_server(
    tmp_path: Path, dovecot: Any, mail_user: Any
) -> None:
    with imap_login(dovecot, mail_user) as client:
        client.create('"Projects"')
        for i in range(5):
            append(client, "INBOX", make_message(i, attachment=i == 0), "\\Seen" if i else "")
        for i in range(3):
            append(client, "Projects", make_message(10 + i))
        typ, listed = client.list()
        assert typ == "OK"
    env = base_env(
        tmp_path,
        JWT_SECRET=JWT_SECRET,
        ENCRYPTION_KEY=generate_key(),
        ALLOWED_MAIL_HOSTS="127.0.0.1/8",
        BLOB_FSYNC="false",
    )
    cli(env, "migrate")
    added = cli(
        env,
        *("accounts", "add", "--tenant", "cli-tenant", "--email", mail_user.email),
        *("--password", mail_user.password, "--imap-host", "127.0.0.1"),
        *("--imap-port", str(dovecot.imap_port), "--imap-security", "none"),
    )
    account_id = added.stdout.split("\t")[0].strip()

    first = cli(env, "sync", account_id, "--foreground")
    assert _summary(first) | {"rate": 0} == {
        "new": 8,
        "rate": 0,
        "flags": 0,
        "deleted": 0,
        "rekeyed": 0,
        "folders": len(listed),
    }
    for folder, count in (("INBOX", 5), ("Projects", 3)):  # a bar per folder, on stderr
        assert re.search(rf"{folder}\b.*\b{count}/{count} \[.*MB", first.stderr), first.stderr

    again = cli(env, "sync", account_id, "--foreground", "--quiet")
    assert (_summary(again)["new"], _summary(again)["flags"]) == (0, 0)
    # --quiet: no bars; stderr has only the audit line of the account-to-tenant lookup
    logged = [json.loads(line) for line in again.stderr.splitlines() if line.strip()]
    assert [line.get("reason") for line in logged] == ["cli: the tenant of an account given by id"]

    with imap_login(dovecot, mail_user) as client:
        client.select('"INBOX"')
        client.uid("STORE", "1:2", "+FLAGS", "(\\Flagged)")
        client.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
        client.expunge()
        append(client, "INBOX", make_message(20))
        client.close()
        recreate_folder(client, "Projects")  # a new UIDVALIDITY, the same 3 messages
        client.close()
        client.delete('"Tmp"')
        assert status(client, "Projects")["MESSAGES"] == 3
    changed = _summary(cli(env, "sync", account_id, "--foreground", "--quiet"))
    assert {k: changed[k] for k in ("new", "flags", "deleted", "rekeyed")} == {
        "new": 1,
        "flags": 2,
        "deleted": 1,
        "rekeyed": 3,
    }

    refused = cli(env, "sync", "not-an-id", "--foreground", check=False)
    assert refused.returncode == 2 and "is not an account id" in refused.stderr
