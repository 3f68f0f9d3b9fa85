"""Tenant isolation and token checks, measured through the running service.

Two tenants, each with a canary string in every object it owns (account, messages and
their attachment, folder, thread, draft, upload, outbox entry, search index). Acting as
one tenant, every /api operation of the OpenAPI document is called with the other
tenant's ids (in the path, in query filters, in bodies) under every tenant-header
variant: 0 cross-tenant 2xx and 0 bytes of the other tenant's canary in any answer.
The service logs in as a role that owns no table and is no superuser, so PostgreSQL's
row-level security is the second wall behind the tenant filter of every answer.
Then the JWT matrix over HTTP with JWT_AUDIENCE and JWT_ISSUER configured: 0 accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import jwt
import psycopg
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import JWT_SECRET
from tests.hardening import figures
from tests.hardening.stack import JWT_AUDIENCE, JWT_ISSUER, Service, token
from tests.support.mailgen import imap_login

TENANTS = {"iso-a": "cnrya7q", "iso-b": "cnryb7q"}  # tenant -> its canary
# A port nothing listens on: sends stay queued, never reach anyone.
CLOSED_SMTP_PORT = 9


@dataclass
class Owned:
    """A tenant's objects, by the parameter names that address them."""

    tenant: str
    canary: str
    ids: dict[str, str] = field(default_factory=dict)


def _mail(canary: str, n: int, reply_to: str | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"{canary} sender <{canary}-from@example.org>"
    mail["To"] = f"{canary}-to@example.test"
    mail["Subject"] = f"{canary} subject {n}"
    mail["Message-ID"] = f"<{canary}-{n}@example.org>"
    if reply_to:
        mail["In-Reply-To"] = mail["References"] = reply_to
    mail.set_content(f"{canary} body {n}")
    mail.add_attachment(
        f"{canary} attachment".encode(), "application", "pdf", filename=f"{canary}.pdf"
    )
    return mail.as_bytes()


def _seed(service: Service, dovecot: Any, user: Any, tenant: str, canary: str) -> Owned:
    owned = Owned(tenant, canary)
    folder = f"{canary}-folder"
    with imap_login(dovecot, user) as client:
        client.create(folder)
        client.append("INBOX", None, None, _mail(canary, 1))
        client.append("INBOX", None, None, _mail(canary, 2, f"<{canary}-1@example.org>"))
        client.append(folder, None, None, _mail(canary, 3))
    account = service.create_account(
        tenant,
        user,
        dovecot.imap_port,
        display_name=f"{canary} account",
        smtp_host="127.0.0.1",
        smtp_port=CLOSED_SMTP_PORT,
        smtp_security="none",
    )
    owned.ids["account_id"] = account["id"]
    status = service.sync(tenant, account["id"])
    if status["state"] == "error":  # a temporary failure: Celery retries it; so do we, once
        status = service.sync(tenant, account["id"])
    assert status["state"] == "ok", status
    messages = service.messages(tenant, account_id=account["id"])
    threaded = next(m for m in messages if m["thread_id"] and "subject 2" in m["subject"])
    owned.ids.update(message_id=threaded["id"], thread_id=threaded["thread_id"], index="1")
    folders = service.call("GET", f"/api/accounts/{account['id']}/folders", tenant).json()
    owned.ids["folder_id"] = next(f["id"] for f in folders["items"] if f["name"] == folder)
    upload = service.call(
        "POST",
        "/api/compose/attachments",
        tenant,
        files={"file": (f"{canary}.txt", canary.encode())},
    )
    owned.ids["attachment_id"] = upload.json()["id"]
    draft = {"account_id": account["id"], "to": [f"{canary}@example.test"]}
    created = service.call("POST", "/api/compose", tenant, json={**draft, "subject": f"{canary} d"})
    owned.ids["draft_id"] = created.json()["id"]
    queued = service.call("POST", "/api/compose", tenant, json={**draft, "subject": f"{canary} q"})
    sent = service.call("POST", f"/api/compose/send/{queued.json()['id']}", tenant)
    assert sent.status_code == 202, sent.text
    owned.ids["outbox_id"] = sent.json()["id"]
    return owned


def _bodies(method: str, path: str, mine: Owned, theirs: Owned) -> list[Any]:
    """Bodies that point at the other tenant's objects (or none, for body-less calls)."""
    them = theirs.ids
    if (method, path) == ("PUT", "/api/accounts/{account_id}"):
        return [{"display_name": "x"}]
    if (method, path) in (("POST", "/api/compose"), ("POST", "/api/compose/draft")):
        base = {"account_id": mine.ids["account_id"], "to": ["x@example.test"]}
        return [
            {**base, "account_id": them["account_id"]},
            {**base, "in_reply_to": them["message_id"]},
            {**base, "forward_of": them["message_id"]},
            {**base, "attachments": [them["attachment_id"]]},
            *([{"id": them["draft_id"], "subject": "x"}] if path.endswith("draft") else []),
        ]
    if (method, path) == ("PUT", "/api/compose/drafts/{draft_id}"):
        return [{"subject": "x", "attachments": [them["attachment_id"]]}]
    if (method, path) == ("POST", "/api/messages/bulk"):
        return [
            {"ids": [them["message_id"]], "seen": True},
            {"ids": [them["message_id"]], "delete": True},
            {"ids": [mine.ids["message_id"]], "folder_id": them["folder_id"]},
        ]
    if (method, path) == ("PATCH", "/api/messages/{message_id}"):
        return [{"seen": True}, {"folder_id": them["folder_id"]}]
    if method in ("POST", "PUT", "PATCH") and path == "/api/compose/attachments":
        return [{"__files__": {"file": ("x.txt", b"x")}}]
    return [None]


@dataclass(frozen=True)
class Probe:
    """One request: does it address the other tenant's objects by id?"""

    method: str
    path: str
    params: dict[str, str]
    body: Any
    by_id: bool


def _probes(spec: dict[str, Any], mine: Owned, theirs: Owned) -> Iterator[Probe]:
    for template, operations in spec["paths"].items():
        if not template.startswith("/api/"):
            continue
        for method in operations:
            names = [p.split("}")[0] for p in template.split("{")[1:]]
            # Their ids in the path; for paths without ids, body references or filters.
            url = template
            for name in names:
                url = url.replace(f"{{{name}}}", theirs.ids.get(name, str(uuid.uuid4())))
            for body in _bodies(method.upper(), template, mine, theirs):
                by_id = bool(names) or (body is not None and "__files__" not in body)
                yield Probe(method.upper(), url, {}, body, by_id)
            if method == "get" and not names:
                filters = {"account_id", "folder_id", "thread_id"}
                declared = {p["name"] for p in operations[method].get("parameters", [])}
                params = {n: theirs.ids[n] for n in filters & declared}
                if template == "/api/sync/search":
                    params["query"] = theirs.canary
                yield Probe("GET", template, params, None, False)


def _header_variants(mine: str, theirs: str) -> dict[str, list[tuple[str, str]]]:
    bearer = ("Authorization", f"Bearer {token(mine)}")
    return {
        "own tenant": [bearer, ("X-Tenant-ID", mine)],
        "missing": [bearer],
        "empty": [bearer, ("X-Tenant-ID", "")],
        "foreign": [bearer, ("X-Tenant-ID", theirs)],
        "duplicated (own, foreign)": [bearer, ("X-Tenant-ID", mine), ("X-Tenant-ID", theirs)],
        "duplicated (foreign, own)": [bearer, ("X-Tenant-ID", theirs), ("X-Tenant-ID", mine)],
        "token for both, own": [
            ("Authorization", f"Bearer {token(mine, theirs)}"),
            ("X-Tenant-ID", mine),
        ],
        "no token, foreign": [("X-Tenant-ID", theirs)],
    }


def _send(service: Service, probe: Probe, header_list: list[tuple[str, str]]) -> Response:
    """Send with http.client, so a header can really be sent twice."""
    request = requests.Request(probe.method, service.base + probe.path, params=probe.params)
    if isinstance(probe.body, dict) and "__files__" in probe.body:
        request.files = probe.body["__files__"]
    elif probe.body is not None:
        request.json = probe.body
    prepared = request.prepare()
    target = urlsplit(prepared.url or "")
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    try:
        conn.putrequest(probe.method, target.path + (f"?{target.query}" if target.query else ""))
        for name, value in [*prepared.headers.items(), *header_list]:
            conn.putheader(name, value)
        body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
        conn.endheaders(body)
        answer = conn.getresponse()
        return Response(answer.status, answer.read())
    finally:
        conn.close()


@dataclass(frozen=True)
class Response:
    """Status and body of one answer."""

    status_code: int
    content: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


def test_no_tenant_sees_or_touches_another(service: Service, dovecot: Any, fresh_user: Any):
    owned = {
        tenant: _seed(service, dovecot, fresh_user(canary), tenant, canary)
        for tenant, canary in TENANTS.items()
    }
    spec = service.call("GET", "/openapi.json").json()
    operations = {
        (m.upper(), p) for p, ops in spec["paths"].items() if p.startswith("/api/") for m in ops
    }
    covered: set[tuple[str, str]] = set()
    requests_made = cross_2xx = leaks = 0
    failures: list[str] = []
    statuses: dict[str, dict[int, int]] = {}
    for (mine_name, mine), (theirs_name, theirs) in (
        (a, b) for a in owned.items() for b in owned.items() if a[0] != b[0]
    ):
        for probe in _probes(spec, mine, theirs):
            covered.add((probe.method, _template(spec, probe.path)))
            for variant, header_list in _header_variants(mine_name, theirs_name).items():
                if variant == "own tenant" and not probe.by_id and probe.method != "GET":
                    continue  # an ordinary write of one's own: nothing to isolate
                response = _send(service, probe, header_list)
                requests_made += 1
                key = f"{variant}{' by id' if probe.by_id else ''}"
                statuses.setdefault(key, {})
                statuses[key][response.status_code] = statuses[key].get(response.status_code, 0) + 1
                body = response.content.lower()
                if theirs.canary.encode() in body:
                    leaks += 1
                    failures.append(f"canary: {variant} {probe} -> {response.status_code}")
                own_read = variant in ("own tenant", "token for both, own") and not probe.by_id
                if response.ok and not own_read:
                    cross_2xx += 1
                    failures.append(f"2xx: {variant} {probe} -> {response.status_code}")
    untouched = _still_theirs(service, owned)
    gaps = _gaps_in_the_second_wall(service)
    missing = sorted(operations - covered)
    note = (
        f"{requests_made} requests: {len(covered)}/{len(operations)} /api operations x the "
        f"other tenant's ids x 8 header variants, both directions; other tenant's data "
        f"unchanged afterwards: {untouched}; answers to their ids as oneself: "
        f"{statuses.get('own tenant by id')}, with a token for both: "
        f"{statuses.get('token for both, own by id')}"
    )
    figures.zero("isolation and auth", "cross-tenant 2xx answers", cross_2xx, note)
    figures.zero("isolation and auth", "other tenant's canary bytes in answers", leaks, note)
    figures.zero(
        "isolation and auth",
        "gaps in PostgreSQL row-level security behind those answers",
        len(gaps),
        f"the service logs in as {urlsplit(service.env['DATABASE_URL']).username}: no "
        "superuser, no BYPASSRLS, owns no table; every tenant table enables and forces "
        f"row-level security; gaps: {gaps or 'none'}",
    )
    assert cross_2xx == leaks == 0, "\n".join(failures[:30])
    assert untouched
    assert missing == [], missing
    assert gaps == [], gaps


def _gaps_in_the_second_wall(service: Service) -> list[str]:
    """What would let an answer above bypass row-level security (store/rls.py): a login
    that is a superuser, bypasses RLS or owns a table; a tenant table not forcing it."""
    login = urlsplit(service.env["DATABASE_URL"]).username
    with psycopg.connect(service.owner_url) as conn:
        role = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (login,)
        ).fetchone()
        owned = conn.execute("SELECT tablename FROM pg_tables WHERE tableowner = %s", (login,))
        unforced = conn.execute(
            "SELECT DISTINCT c.relname FROM pg_class c JOIN information_schema.columns i"
            " ON i.table_name = c.relname AND i.table_schema = current_schema()"
            " WHERE i.column_name = 'tenant_id' AND c.relkind = 'r'"
            " AND c.relnamespace = current_schema()::regnamespace"
            " AND NOT (c.relrowsecurity AND c.relforcerowsecurity)"
        )
        gaps = [f"login {login} owns {t}" for (t,) in owned]
        gaps += [f"{t} does not force row-level security" for (t,) in unforced]
    if role is None or any(role):
        gaps.append(f"login {login} is missing, a superuser or bypasses row-level security")
    return gaps


def _template(spec: dict[str, Any], path: str) -> str:
    for template in spec["paths"]:
        parts, wanted = template.split("/"), path.split("/")
        if len(parts) == len(wanted) and all(
            p == w or p.startswith("{") for p, w in zip(parts, wanted, strict=True)
        ):
            return template
    return path


def _still_theirs(service: Service, owned: dict[str, Owned]) -> bool:
    """Every seeded object still answers to its owner, unchanged."""
    for tenant, own in owned.items():
        checks = [
            f"/api/accounts/{own.ids['account_id']}",
            f"/api/messages/{own.ids['message_id']}",
            f"/api/compose/drafts/{own.ids['draft_id']}",
            f"/api/outbox/{own.ids['outbox_id']}",
            f"/api/threads/{own.ids['thread_id']}",
        ]
        for path in checks:
            response = service.call("GET", path, tenant)
            if response.status_code != 200 or own.canary.encode() not in response.content:
                return False
        message = service.call("GET", f"/api/messages/{own.ids['message_id']}", tenant).json()
        if message["seen"] or message["folder_id"] == own.ids["folder_id"]:
            return False
    return True


# ---- the JWT matrix -------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _jwt_matrix(tenant: str) -> dict[str, str]:
    now = int(time.time())
    good = {
        "sub": "t",
        "tenants": [tenant],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "matrix",
        "aud": JWT_AUDIENCE,
        "iss": JWT_ISSUER,
    }
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    valid = jwt.encode(good, JWT_SECRET, algorithm="HS256")
    head, payload, signature = valid.split(".")
    forged_payload = _b64(json.dumps({**good, "tenants": [tenant, "iso-b"]}).encode())
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    return {
        "alg none": _unsigned({"alg": "none", "typ": "JWT"}, good),
        "alg None (case)": _unsigned({"alg": "None", "typ": "JWT"}, good),
        "alg none with the valid signature": f"{_unsigned({'alg': 'none'}, good)}{signature}",
        "RS256 by another key": jwt.encode(good, rsa_key, algorithm="RS256"),
        "HS256 keyed with an RSA public key": _hs_with_key(good, public_pem),
        "HS512 with the right secret": jwt.encode(good, JWT_SECRET, algorithm="HS512"),
        "expired": jwt.encode({**good, "exp": now - 3600}, JWT_SECRET, algorithm="HS256"),
        "future nbf": jwt.encode({**good, "nbf": now + 3600}, JWT_SECRET, algorithm="HS256"),
        "no exp": jwt.encode(_without(good, "exp"), JWT_SECRET, algorithm="HS256"),
        "wrong aud": jwt.encode({**good, "aud": "other"}, JWT_SECRET, algorithm="HS256"),
        "no aud": jwt.encode(_without(good, "aud"), JWT_SECRET, algorithm="HS256"),
        "wrong iss": jwt.encode({**good, "iss": "https://evil"}, JWT_SECRET, algorithm="HS256"),
        "no iss": jwt.encode(_without(good, "iss"), JWT_SECRET, algorithm="HS256"),
        "unknown crit": jwt.encode(
            good, JWT_SECRET, algorithm="HS256", headers={"crit": ["x-must"], "x-must": 1}
        ),
        "tampered signature": f"{head}.{payload}.{flipped}",
        "tampered payload": f"{head}.{forged_payload}.{signature}",
        "wrong secret": jwt.encode(good, "another-secret-" + "z" * 40, algorithm="HS256"),
        "tenant not in token": jwt.encode(
            {**good, "tenants": ["someone-else"]}, JWT_SECRET, algorithm="HS256"
        ),
        "no tenants claim": jwt.encode(_without(good, "tenants"), JWT_SECRET, algorithm="HS256"),
        "malformed tenants": jwt.encode(
            {**good, "tenants": [{"$ne": ""}]}, JWT_SECRET, algorithm="HS256"
        ),
        "garbage": "not.a.token",
        "empty": "",
    }


def _hs_with_key(claims: dict[str, Any], key: bytes) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def _without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != name}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_jwt_matrix_over_http_accepts_nothing_bad(service: Service) -> None:
    tenant = "iso-jwt"
    control = service.call("GET", "/api/accounts", tenant)
    assert control.status_code == 200, control.text  # a good token passes: the matrix bites
    accepted, answers = [], {}
    for case, value in _jwt_matrix(tenant).items():
        response = service.http.get(
            service.base + "/api/accounts",
            headers={"Authorization": f"Bearer {value}", "X-Tenant-ID": tenant},
            timeout=30,
        )
        answers[case] = response.status_code
        if response.ok:
            accepted.append(case)
    statuses = sorted(set(answers.values()))
    figures.zero(
        "isolation and auth",
        "JWT matrix over HTTP: bad tokens accepted",
        len(accepted),
        f"{len(answers)} cases with JWT_AUDIENCE and JWT_ISSUER set ({', '.join(answers)}); "
        f"answers {statuses}",
    )
    assert accepted == [], accepted
    assert all(status in (401, 403) for status in answers.values()), answers
