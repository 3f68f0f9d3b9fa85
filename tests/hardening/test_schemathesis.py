"""Schemathesis over our own /openapi.json against the running service (Gunicorn + Celery
on PostgreSQL): 0 server errors, 0 schema violations.

Every operation gets positive and negative examples with a valid token and tenant header,
and, where the path names objects, positive examples on real ids (an account synced from
Dovecot, its messages, folders and thread, a draft, an upload), so the 200 answers are
checked against their schemas too. Failures are collected, not raised at the first one,
so the figure counts them all (distinct by operation, check and status).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import AcceptedNegativeData, Failure, FailureGroup, ServerError

from tests.hardening import figures
from tests.hardening.stack import Service, headers
from tests.support.mailgen import append, imap_login, make_message

TENANT = "st-tenant"
# Examples per operation and mode: the whole run stays well under two minutes.
EXAMPLES = int(os.environ.get("HARDENING_ST_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# A negative example must be refused with a 4xx; 413/414 are refusals too (the body cap and
# Gunicorn's request-line limit), besides Schemathesis' defaults.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428"]
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [*REJECTED, "429", "5xx"]}}}
)
# Deleting the seeded objects early would turn every later real-id example into a 404.
DESTRUCTIVE = ("DELETE",)


def _seed(service: Service, dovecot: Any, user: Any) -> dict[str, str]:
    """Real objects of TENANT, by the path parameter names that address them."""
    with imap_login(dovecot, user) as client:
        for i in range(6):
            append(client, "INBOX", make_message(i, attachment=i % 2 == 0, html=True))
    account = service.create_account(TENANT, user, dovecot.imap_port)
    assert service.sync(TENANT, account["id"])["state"] == "ok"
    message = service.messages(TENANT)[0]
    draft = service.call("POST", "/api/compose", TENANT, json={"subject": "s", "body": "b"})
    upload = service.call(
        "POST", "/api/compose/attachments", TENANT, files={"file": ("a.txt", b"hello")}
    )
    assert draft.status_code == 201 and upload.status_code == 201, (draft.text, upload.text)
    return {
        "account_id": account["id"],
        "message_id": message["id"],
        "thread_id": message["thread_id"],
        "index": "1",
        "draft_id": draft.json()["id"],
        "attachment_id": upload.json()["id"],
    }


class Findings:
    """Distinct failures: (operation, kind, title, status) -> one example message."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str, str, int], str] = {}
        self.calls = 0
        self.form_artifacts = 0

    def check(self, case: Any, auth: dict[str, str], checks: list[Callable[..., Any]]) -> None:
        response = case.call(headers=auth, timeout=60)
        self.calls += 1
        try:
            case.validate_response(response, checks=checks, headers=auth)
        except FailureGroup as group:
            for failure in group.exceptions:
                self._add(case, response, failure)
        except Failure as failure:
            self._add(case, response, failure)

    def _add(self, case: Any, response: Any, failure: Any) -> None:
        if _form_text_artifact(case, failure):
            self.form_artifacts += 1
            return
        kind = "server_error" if isinstance(failure, ServerError) else "schema"
        key = (case.operation.label, kind, str(failure.title), response.status_code)
        self.found.setdefault(key, f"{failure.message[:300]} | {case.as_curl_command()[:300]}")

    def count(self, kind: str) -> int:
        return sum(1 for key in self.found if key[1] == kind)

    def report(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in sorted(self.found.items()))


def _form_text_artifact(case: Any, failure: Any) -> bool:
    """A "negative" multipart field that is valid once sent: every form value is text, so a
    number generated for a string field arrives as a valid string (not modelled upstream)."""
    if not isinstance(failure, AcceptedNegativeData):
        return False
    if "multipart/form-data" not in str(case.media_type):
        return False
    found = [line for line in failure.message.splitlines() if "violates" in line]
    return bool(found) and all("in body" in line and "`type`" in line for line in found)


def _run(strategy: Any, action: Callable[[Any], None]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: we count, not minimise
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def each(case: Any) -> None:
        action(case)

    # Unsatisfiable: nothing to negate (no parameters, no body); the positive run covers it.
    with contextlib.suppress(Unsatisfiable):
        each()


def test_openapi_contract_holds_under_fuzzing(service: Service, dovecot: Any, fresh_user: Any):
    ids = _seed(service, dovecot, fresh_user("st"))
    # Given to the strategies as fixed values, so negative examples do not "negate" them.
    fixed = headers(TENANT)
    auth = {"Authorization": fixed["Authorization"]}
    schema = schemathesis.openapi.from_url(service.base + "/openapi.json", config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.method.upper() in DESTRUCTIVE)
    findings = Findings()
    for op in operations:
        check = lambda case: findings.check(case, auth, CHECKS)  # noqa: E731
        _run(op.as_strategy(GenerationMode.POSITIVE, headers=fixed), check)
        _run(
            op.as_strategy(GenerationMode.NEGATIVE, headers=fixed),
            lambda case: findings.check(case, auth, [*CHECKS, negative_data_rejection]),
        )
        names = [p.name for p in op.path_parameters]
        if names and all(n in ids for n in names):
            real = {n: ids[n] for n in names}
            strategy = op.as_strategy(GenerationMode.POSITIVE, headers=fixed, path_parameters=real)
            _run(strategy, check)
    server_errors = findings.count("server_error")
    violations = findings.count("schema")
    note = (
        f"{len(operations)} operations, {findings.calls} requests, {EXAMPLES} examples per mode; "
        f"{findings.form_artifacts} negative multipart examples valid once sent as text"
    )
    figures.zero("bad input", "schemathesis: server errors (5xx)", server_errors, note)
    figures.zero("bad input", "schemathesis: schema violations", violations, note)
    assert server_errors == violations == 0, findings.report()
