"""Hostile MIME through the real Dovecot and the real sync (Celery worker, PostgreSQL).

Each bomb sits between ordinary messages in one mailbox; after the sync every message
the server has is stored (counted against STATUS), each bomb is kept byte for byte with a
``parse_error`` or parsed within the configured limits, and no worker process died.
"""

from __future__ import annotations

import hashlib
from typing import Any

from email_service.mail.mime.parse import MAX_FIELD_CHARS, Limits
from tests.hardening import corpus, figures
from tests.hardening.stack import Service
from tests.servers.process import group_pids
from tests.support.mailgen import fetch_raw, imap_login, make_message, status

TENANT = "bomb-tenant"
LIMITS = Limits()
# A 50 MB message takes a few seconds to fetch, store and parse; allow for a slow machine.
SYNC_TIMEOUT_S = 300


def _append_all(dovecot: Any, user: Any, raws: list[bytes]) -> tuple[list[int], int]:
    """APPEND every message; returns the UIDs and how many Dovecot refused."""
    uids, refused = [], 0
    with imap_login(dovecot, user) as client:
        for raw in raws:
            typ, _ = client.append("INBOX", None, None, raw)
            if typ != "OK":
                refused += 1
                continue
            uids.append(status(client, "INBOX")["UIDNEXT"] - 1)
    return uids, refused


def _details(service: Service, account_id: str) -> tuple[list[dict[str, Any]], int]:
    """Every stored message of the account in full, and how many reads were 5xx."""
    found, errors = [], 0
    for item in service.messages(TENANT, account_id=account_id):
        response = service.call("GET", f"/api/messages/{item['id']}", TENANT)
        if response.status_code >= 500:
            errors += 1
            continue
        found.append(response.json())
    return found, errors


def _within_limits(message: dict[str, Any]) -> bool:
    return (
        len(message["subject"]) <= MAX_FIELD_CHARS
        and len(message["text"] or "") <= LIMITS.max_text_chars
        and len(message["html"] or "") <= LIMITS.max_text_chars
        and len(message["attachments"]) <= LIMITS.max_parts
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_mime_bombs_are_stored_raw_and_nothing_else_is_lost(
    service: Service, dovecot: Any, fresh_user: Any
) -> None:
    user = fresh_user("bombs")
    raws: list[bytes] = []
    for n, (_, build) in enumerate(corpus.BOMBS.values()):
        raws += [make_message(1000 + n), build(), make_message(2000 + n)]
    uids, refused = _append_all(dovecot, user, raws)
    assert refused == 0, "Dovecot refused a bomb: the test no longer measures the sync"
    bomb_uids = dict(zip(corpus.BOMBS, uids[1::3], strict=True))
    worker = service.worker
    assert worker is not None
    before = group_pids(worker.pid)
    account = service.create_account(TENANT, user, dovecot.imap_port)
    final = service.sync(TENANT, account["id"], timeout=SYNC_TIMEOUT_S)
    replaced = len(before - group_pids(worker.pid))
    with imap_login(dovecot, user) as client:
        on_server = status(client, "INBOX")["MESSAGES"]
        server_sha = {n: _sha(fetch_raw(client, "INBOX", uid)) for n, uid in bomb_uids.items()}
    stored, read_errors = _details(service, account["id"])
    by_msgid = {m["message_id_header"]: m for m in stored}
    contained, notes = 0, []
    for name, (marker, _) in corpus.BOMBS.items():
        message = by_msgid.get(f"<{marker}@bombs.example>")
        if message is None:
            notes.append(f"{name}: not stored")
            continue
        raw = service.call("GET", f"/api/messages/{message['id']}/raw", TENANT)
        kept_raw = raw.status_code == 200 and _sha(raw.content) == server_sha[name]
        ok = kept_raw and (message["parse_error"] is not None or _within_limits(message))
        contained += ok
        notes.append(f"{name}: {message['parse_error'] or 'parsed within limits'}")
    lost = on_server - len(stored)
    figures.record(
        "bad input",
        "MIME bombs kept raw, with parse_error or within the limits",
        f"{contained}/{len(corpus.BOMBS)}",
        f"{len(corpus.BOMBS)}/{len(corpus.BOMBS)}",
        contained == len(corpus.BOMBS),
        "; ".join(notes),
    )
    figures.zero(
        "bad input",
        "MIME bomb batch: messages lost",
        lost,
        f"{on_server} on the server (6 bombs + 12 ordinary), sync state {final['state']}",
    )
    figures.zero("bad input", "MIME bomb batch: worker processes lost", replaced)
    assert final["state"] == "ok", final
    assert contained == len(corpus.BOMBS), notes
    assert lost == read_errors == replaced == 0
    assert service.ready()


def test_cpython_and_broken_charset_corpora_sync_without_a_crash(
    service: Service, dovecot: Any, fresh_user: Any
) -> None:
    cpython = corpus.cpython_messages()
    broken = list(corpus.broken_charsets())
    user = fresh_user("corpus")
    _, refused = _append_all(dovecot, user, cpython + broken)
    worker = service.worker
    assert worker is not None
    before = group_pids(worker.pid)
    account = service.create_account(TENANT, user, dovecot.imap_port)
    final = service.sync(TENANT, account["id"], timeout=SYNC_TIMEOUT_S)
    replaced = len(before - group_pids(worker.pid))
    with imap_login(dovecot, user) as client:
        on_server = status(client, "INBOX")["MESSAGES"]
    stored, read_errors = _details(service, account["id"])
    raw_errors = sum(
        service.call("GET", f"/api/messages/{m['id']}/raw", TENANT).status_code >= 500
        for m in stored
    )
    lost = on_server - len(stored)
    crashes = lost + read_errors + raw_errors + replaced + (final["state"] != "ok")
    unparsed = sum(m["parse_error"] is not None for m in stored)
    figures.zero(
        "bad input",
        "CPython test_email + broken-charset corpora through the sync: crashes",
        crashes,
        f"{len(cpython)} CPython + {len(broken)} generated messages, {refused} refused by "
        f"Dovecot, {on_server} synced; {unparsed} kept with a parse_error; crashes = lost "
        "messages + 5xx reads + dead worker processes + failed syncs",
    )
    if not cpython:
        figures.record(
            "bad input", "CPython test_email corpus", None, "", None, "not installed here"
        )
    assert final["state"] == "ok", final
    assert crashes == 0, (lost, read_errors, raw_errors, replaced)
