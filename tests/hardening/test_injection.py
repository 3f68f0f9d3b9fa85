"""CR/LF injection through the API into IMAP and SMTP, and mailbox names that fight back.

IMAP: a recording proxy in front of the real Dovecot sees every byte the sync sends; an
injected command would be a command with a tag that is not ours or a verb no sync uses
(the payload tries ``INJ1 DELETE INJCANARY``, and the INJCANARY folder must survive).
SMTP: a real SMTP server (aiosmtpd on loopback) records every RCPT and message; an
injected header or recipient would be an ``X-Injected``/``Bcc`` header or an address at
attacker.example.
"""

from __future__ import annotations

import email
import email.policy
import os
import time
from email.utils import getaddresses
from typing import Any

from tests.hardening import figures
from tests.hardening.recorder import parse, recording_proxy
from tests.hardening.stack import Service
from tests.servers.wait import wait_for
from tests.support.mailgen import append, imap_login, make_message
from tests.support.smtp_seam import smtp_seam

TENANT = "inj-tenant"
CANARY = "INJCANARY"
INJECTED = f"INJ1 DELETE {CANARY}"
# The four spellings of a line break issue 7 names, each followed by a command.
BREAKS = {
    "raw CRLF": f"\r\n{INJECTED}",
    "bare CR": f"\r{INJECTED}",
    "bare LF": f"\n{INJECTED}",
    "RFC 2047": f"=?utf-8?q?=0D=0A{INJECTED.replace(' ', '_')}?=",
    "NUL": f"\x00{INJECTED}",
    "quote + literal": f'" {{{len(INJECTED)}}}\r\n{INJECTED}',
}
ATTACKER = "attacker.example"


def _folders_on_server(dovecot: Any, user: Any) -> set[str]:
    with imap_login(dovecot, user) as client:
        typ, data = client.list()
    assert typ == "OK"
    return {line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in data}


def _sync_state(service: Service, account_id: str) -> str:
    try:
        return str(service.sync(TENANT, account_id, timeout=60)["state"])
    except AssertionError:
        return "timeout"


def test_detector_sees_an_injected_command() -> None:
    """The parsers the figures rely on find a smuggled command (not a literal's data) and an
    injected header."""
    literal = b'E1 LOGIN {17}\r\nx\r\nINJ1 DELETE y z "pw"\r\n'
    assert [c.tag for c in parse(literal)[0]] == [b"E1"]
    smuggled = b'E1 LOGIN "x"\r\nINJ1 DELETE y "pw"\r\n'
    commands, _ = parse(smuggled)
    assert [(c.tag, c.expected) for c in commands] == [(b"E1", True), (b"INJ1", False)]
    injected = f"To: a@example.test\r\nBcc: evil@{ATTACKER}\r\nSubject: x\r\n\r\nb".encode()
    assert _extra_in(injected) == 2  # the Bcc header and the address in it


def test_crlf_in_account_fields_and_search_terms_sends_no_extra_imap_command(
    service: Service, dovecot: Any, fresh_user: Any
) -> None:
    user = fresh_user("inj")
    with imap_login(dovecot, user) as client:
        client.create(CANARY)
        append(client, "INBOX", make_message(1))
    refused = accepted = 0
    states: dict[str, int] = {}
    with recording_proxy(dovecot.host, dovecot.imap_port) as proxy:
        base = {
            "password": user.password,
            "username": user.email,
            "imap_host": "127.0.0.1",
            "imap_port": proxy.port,
            "imap_security": "none",
        }
        for n, (name, tail) in enumerate(BREAKS.items()):
            for field in ("username", "password", "display_name", "email"):
                body = {**base, "email": f"v{n}{field}-{user.email}"}
                body[field] = f"{body.get(field, 'Name')}{tail}"
                response = service.call("POST", "/api/accounts", TENANT, json=body)
                assert response.status_code < 500, (name, field, response.text)
                if response.status_code != 201:
                    refused += 1
                    continue
                accepted += 1
                state = _sync_state(service, response.json()["id"])
                states[state] = states.get(state, 0) + 1
        clean = service.create_account(TENANT, user, proxy.port, email=f"clean-{user.email}")
        for name, tail in BREAKS.items():  # the same through an update
            for field in ("username", "password"):
                value = f"{base[field]}{tail}"
                url = f"/api/accounts/{clean['id']}"
                response = service.call("PUT", url, TENANT, json={field: value})
                assert response.status_code < 500, (name, field, response.text)
                if response.status_code == 200:
                    accepted += 1
                    state = _sync_state(service, clean["id"])
                    states[state] = states.get(state, 0) + 1
                else:
                    refused += 1
        before_search = len(proxy.commands()[0])
        search_errors = 0
        for tail in BREAKS.values():
            for query in (f"hello{tail}", f'from:"a{tail}"', f"subject:({tail})"):
                response = service.call("GET", "/api/sync/search", TENANT, params={"query": query})
                search_errors += response.status_code >= 500
        search_commands = len(proxy.commands()[0]) - before_search
        extra = proxy.unexpected()
        total = len(proxy.commands()[0])
    canary_alive = CANARY in _folders_on_server(dovecot, user)
    figures.zero(
        "injection",
        "CR/LF in account fields: extra IMAP commands at a recording proxy",
        len(extra),
        f"{len(BREAKS)} break spellings x username/password/display name/email, on create "
        f"and update: {refused} refused by the API (4xx), {accepted} accepted and synced "
        f"(end states {states}); {total} commands recorded; {CANARY} folder intact: "
        f"{canary_alive}",
    )
    figures.zero(
        "injection",
        "CR/LF in search terms: IMAP commands sent / 5xx",
        search_commands + search_errors,
        f"{3 * len(BREAKS)} queries; search reads the local index only",
    )
    assert extra == [], extra
    assert canary_alive
    assert search_commands == search_errors == 0


# Folder names a user can create, as Unicode; Dovecot stores their modified UTF-7 form.
ROUND_TRIP_NAMES = [
    "Entwürfe",
    "日本語",
    "😀 Emoji",
    "Amp & Co",
    'Quote"d',
    "Back\\slash",
    "{5}",
    "Per%cent",
    "Star*",
    "Paren)(",
    "Bracket]",
    "Space  name",
]
# Dovecot refuses control characters in CREATE, yet lists a folder that has them on disk
# (in modified UTF-7, "Bad&AA0ACg-INJ1 ..."): made directly in the Maildir.
ON_DISK_NAMES = [f"Bad\r\n{INJECTED}"]
# Names no conforming server sends (RFC 3501 §5.1.3): shown to the client by the seam.
INVALID_UTF7 = ["&Jjo", "&AGE-", "&!!!-", "&ZeVnLIqe", "&", "A&B"]


def _imap_quote(raw: bytes) -> bytes:
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def test_folder_names_round_trip_and_invalid_ones_do_not_crash(
    service: Service, dovecot: Any, fresh_user: Any
) -> None:
    user = fresh_user("names")
    rename = {f"ZZINVALID{n}ZZ".encode(): name.encode() for n, name in enumerate(INVALID_UTF7)}
    with imap_login(dovecot, user) as client:
        for n, name in enumerate([*ROUND_TRIP_NAMES, *ON_DISK_NAMES, *map(bytes.decode, rename)]):
            quoted = _imap_quote(_encode_utf7(name)).decode()
            if name in ON_DISK_NAMES:
                _maildir_folder(dovecot, user, name)  # the Maildir exists by now
            else:
                typ, data = client.create(quoted)
                assert typ == "OK", (name, data)
            typ, data = client.append(quoted, None, None, make_message(300 + n))
            assert typ == "OK", (name, data)
    with recording_proxy(dovecot.host, dovecot.imap_port, rename) as proxy:
        account = service.create_account(TENANT, user, proxy.port, email=f"n-{user.email}")
        final = service.sync(TENANT, account["id"], timeout=120)
        extra = proxy.unexpected()
    listing = service.call("GET", f"/api/accounts/{account['id']}/folders", TENANT)
    assert listing.status_code == 200, listing.text
    by_name = {f["name"]: f["message_count"] for f in listing.json()["items"]}
    names = [*ROUND_TRIP_NAMES, *ON_DISK_NAMES]
    round_trips = sum(by_name.get(name) == 1 for name in names)
    invalid_ok = sum(by_name.get(name) == 1 for name in INVALID_UTF7)
    figures.record(
        "injection",
        "modified UTF-7 folder names round-tripped (name shown, messages synced)",
        f"{round_trips}/{len(names)}",
        f"{len(names)}/{len(names)}",
        round_trips == len(names),
        "quotes, backslash, braces, wildcards, non-BMP, CR LF inside a name",
    )
    crashes = (final["state"] != "ok") + (len(INVALID_UTF7) - invalid_ok)
    figures.zero(
        "injection",
        "invalid modified UTF-7 folder names: crashes or folders not synced",
        crashes,
        f"{len(INVALID_UTF7)} names a proxy seam shows instead of real ones; shown raw, "
        f"synced; sync state {final['state']}",
    )
    figures.zero(
        "injection", "hostile mailbox names: extra IMAP commands at a recording proxy", len(extra)
    )
    assert final["state"] == "ok", (final["last_error"], by_name)
    assert round_trips == len(names), by_name
    assert invalid_ok == len(INVALID_UTF7), by_name
    assert extra == []


def _maildir_folder(dovecot: Any, user: Any, name: str) -> None:
    """A Maildir++ folder made on disk, owned by the mail user (after the first login)."""
    folder = dovecot.maildir(user.email) / f".{_encode_utf7(name).decode()}"
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True)
    for path in (folder, *folder.iterdir()):
        os.chown(path, dovecot.identity.mail_uid, dovecot.identity.mail_gid)


def _encode_utf7(name: str) -> bytes:
    from imapclient import imap_utf7

    return bytes(imap_utf7.encode(name))


# Compose fields that end up in headers or the envelope, each with every break spelling.
def _compose_vectors(victim: str) -> list[tuple[str, dict[str, Any]]]:
    evil = f"evil@{ATTACKER}"
    vectors: list[tuple[str, dict[str, Any]]] = []
    for name, tail in BREAKS.items():
        hdr = tail.replace(INJECTED, f"Bcc: {evil}").replace(
            INJECTED.replace(" ", "_"), f"Bcc:_{evil}"
        )
        vectors += [
            (f"subject {name}", {"to": [victim], "subject": f"Hi{hdr}"}),
            (f"display name {name}", {"to": [{"email": victim, "name": f"Eve{hdr}"}]}),
            (f"address {name}", {"to": [f"{victim}{tail.replace(INJECTED, f'RCPT TO:<{evil}>')}"]}),
        ]
    vectors += [
        ("display name with quotes", {"to": [{"email": victim, "name": f'Eve", {evil}, "x'}]}),
        ("address with angle brackets", {"to": [f"{victim}>, <{evil}"]}),
        (
            "body with a lone dot line",
            {"to": [victim], "body": f"a\r\n.\r\nRCPT TO:<{evil}>\r\nDATA\r\nX-Injected: 1\r\n"},
        ),
        ("html, lone dot line", {"to": [victim], "html": f"<p>a</p>\r\n.\r\nRCPT TO:<{evil}>"}),
    ]
    return vectors


def _extra_in(content: bytes) -> int:
    message = email.message_from_bytes(content, policy=email.policy.compat32)
    extra = sum(1 for key in message if key.lower() in ("x-injected", "bcc"))
    for field in ("to", "cc", "bcc", "from", "reply-to"):
        for _, address in getaddresses(message.get_all(field, [])):
            extra += address.lower().endswith(ATTACKER)
    return extra


def test_crlf_in_compose_fields_adds_no_header_or_recipient(
    service: Service, dovecot: Any, fresh_user: Any
) -> None:
    user = fresh_user("smtp")
    victim = "victim@example.test"
    with smtp_seam() as seam:
        account = service.create_account(
            TENANT,
            user,
            dovecot.imap_port,
            email=f"s-{user.email}",
            smtp_host="127.0.0.1",
            smtp_port=seam.port,
            smtp_security="none",
        )
        refused, sent = 0, []
        for name, body in _compose_vectors(victim):
            draft = service.call(
                "POST", "/api/compose", TENANT, json={"account_id": account["id"], **body}
            )
            assert draft.status_code < 500, (name, draft.text)
            if draft.status_code != 201:
                refused += 1
                continue
            queued = service.call("POST", f"/api/compose/send/{draft.json()['id']}", TENANT)
            assert queued.status_code < 500, (name, queued.text)
            if queued.status_code != 202:
                refused += 1
                continue
            sent.append(queued.json()["id"])

        def settled() -> bool:
            states = [service.call("GET", f"/api/outbox/{i}", TENANT).json()["state"] for i in sent]
            return all(s in ("sent", "failed", "cancelled") for s in states)

        wait_for(settled, "the sends to settle", timeout=120)
        time.sleep(0.2)  # the last message's RCPTs are recorded before its DATA ends
        extra_rcpt = sum(not r.lower().endswith("example.test") for r in seam.rcpts)
        extra_headers = sum(_extra_in(d.content) for d in seam.delivered)
    figures.zero(
        "injection",
        "CR/LF in subject, display names, addresses, bodies: extra headers or RCPT at SMTP",
        extra_rcpt + extra_headers,
        f"{refused + len(sent)} compose requests: {refused} refused by the API (4xx), "
        f"{len(sent)} sent; {len(seam.delivered)} messages and {len(seam.rcpts)} RCPT "
        f"commands seen by the SMTP server ({extra_rcpt} extra RCPT, {extra_headers} extra "
        "headers)",
    )
    assert extra_rcpt == extra_headers == 0
    assert len(seam.delivered) == len(sent)
