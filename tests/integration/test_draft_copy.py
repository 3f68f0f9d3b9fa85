"""Drafts kept in the IMAP Drafts folder of the real Dovecot: saved, replaced on every
change, removed when discarded, sent or moved to another account; one copy whatever the
order or repetition of the jobs. On both backends."""

from __future__ import annotations

import email
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import event, update

from email_service.jobs.queues import DEFERRED, CeleryQueue
from email_service.services.outgoing import draft_copy
from email_service.store import scope
from email_service.store.models import Draft
from tests.conftest import TENANT_A
from tests.servers.wait import wait_for
from tests.support.compose_api import (
    add_account,
    running_app,
    send,
    wait_sent_copy,
    wait_state,
)
from tests.support.mailgen import imap_login, quote
from tests.support.smtp_seam import Seam, smtp_seam

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def seam() -> Iterator[Seam]:
    with smtp_seam() as server:
        yield server


def _stack(settings: Any, dovecot: Any, seam: Seam, as_tenant: Headers) -> Iterator[Any]:
    users = [
        dovecot.add_user(f"drafts-{n}-{secrets.token_hex(4)}@example.test", f"pw-{n}")
        for n in range(2)
    ]
    with running_app(settings) as (api, runtime):
        ids = [
            add_account(
                api,
                as_tenant(TENANT_A),
                user.email,
                password=user.password,
                imap_port=dovecot.imap_port,
                smtp_port=seam.port,
            )
            for user in users
        ]
        yield {"api": api, "runtime": runtime, "users": users, "ids": ids}


@pytest.fixture
def stack(
    make_settings: Any, dovecot: Any, seam: Seam, as_tenant: Headers
) -> Iterator[dict[str, Any]]:
    """The app with two accounts of tenant A on the real Dovecot, sending to a seam."""
    yield from _stack(make_settings(), dovecot, seam, as_tenant)


def copies(dovecot: Any, user: Any, draft_id: str) -> list[tuple[bytes, EmailMessage]]:
    """(flags, message) of every copy of the draft in the user's Drafts folder."""
    found = []
    with imap_login(dovecot, user) as client:
        client.select(quote("Drafts"), readonly=True)
        mid = f"draft.{uuid.UUID(draft_id).hex}@"
        typ, data = client.uid("SEARCH", "HEADER", "Message-ID", f'"{mid}"')
        assert typ == "OK"
        for uid in data[0].split():
            typ, parts = client.uid("FETCH", uid.decode(), "(FLAGS BODY.PEEK[])")
            assert typ == "OK"
            if not isinstance(parts[0], tuple):  # expunged by the job since the SEARCH
                continue
            message = email.message_from_bytes(parts[0][1], policy=policy.default)
            found.append((bytes(parts[0][0]), message))
    return found


def wait_copies(
    dovecot: Any, user: Any, draft_id: str, check: Callable[[list[Any]], bool], what: str
) -> list[tuple[bytes, EmailMessage]]:
    def ready() -> tuple[list[Any]] | None:  # a tuple: an empty list is an answer too
        found = copies(dovecot, user, draft_id)
        return (found,) if check(found) else None

    return list(wait_for(ready, what)[0])


def one_with_subject(subject: str) -> Callable[[list[Any]], bool]:
    return lambda found: len(found) == 1 and found[0][1]["Subject"] == subject


def no_copy(found: list[Any]) -> bool:
    return found == []


def copied_draft(
    stack: dict[str, Any], dovecot: Any, headers: dict[str, str], subject: str, route: str
) -> dict[str, Any]:
    """A draft of the first account made by ``route``, once its copy is in Drafts."""
    response = stack["api"].post(
        route,
        headers=headers,
        json={"account_id": stack["ids"][0], "to": ["bob@example.test"], "subject": subject},
    )
    assert response.status_code == 201, response.get_json()
    draft: dict[str, Any] = response.get_json()
    wait_copies(dovecot, stack["users"][0], draft["id"], one_with_subject(subject), "a copy")
    return draft


def test_a_draft_is_saved_replaced_and_removed_in_the_drafts_folder(
    stack: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, runtime, (alice, _other) = stack["api"], stack["runtime"], stack["users"]
    headers = as_tenant(TENANT_A)
    created = api.post(
        "/api/compose/draft",
        headers=headers,
        json={
            "account_id": stack["ids"][0],
            "to": [{"email": "bob@example.test", "name": "Bob Ünïcode"}],
            "bcc": ["hidden@example.test"],
            "subject": "First version",
            "body": "Hello",
        },
    )
    assert created.status_code == 201, created.get_json()
    draft_id = created.get_json()["id"]
    ((flags, message),) = wait_copies(
        dovecot, alice, draft_id, one_with_subject("First version"), "the first copy"
    )
    assert b"\\Draft" in flags and b"\\Seen" in flags
    assert message["Bcc"].addresses[0].addr_spec == "hidden@example.test"  # kept on a draft
    assert message["To"].addresses[0].display_name == "Bob Ünïcode"
    body = message.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "Hello"
    # every change replaces the copy: one copy, the newest version
    for n in range(2, 5):
        changed = api.put(
            f"/api/compose/drafts/{draft_id}",
            headers=headers,
            json={"subject": f"Version {n}"},
        )
        assert changed.status_code == 200, changed.get_json()
    wait_copies(dovecot, alice, draft_id, one_with_subject("Version 4"), "the newest copy")
    with runtime.db.session() as session:
        row = session.get_one(Draft, uuid.UUID(draft_id))
        assert row.imap_uid is not None and row.imap_saved_at == row.updated_at
    # a draft without recipients is still a draft
    empty = api.post("/api/compose/draft", headers=headers, json={"subject": "Ideas"}).get_json()
    wait_copies(dovecot, alice, empty["id"], one_with_subject("Ideas"), "a draft with no To")
    # discarded: no copy left
    assert api.delete(f"/api/compose/drafts/{draft_id}", headers=headers).status_code == 204
    wait_copies(dovecot, alice, draft_id, no_copy, "the copy removed")
    assert len(copies(dovecot, alice, empty["id"])) == 1


def test_a_sent_draft_leaves_the_drafts_folder_and_is_in_sent(
    stack: dict[str, Any], dovecot: Any, seam: Seam, as_tenant: Headers
) -> None:
    api, (alice, _other) = stack["api"], stack["users"]
    headers = as_tenant(TENANT_A)
    draft = copied_draft(stack, dovecot, headers, "Go", "/api/compose")
    queued = send(api, headers, draft["id"])
    wait_state(api, headers, queued["id"], "sent")
    wait_copies(dovecot, alice, draft["id"], no_copy, "the copy removed")
    assert len(seam.delivered) == 1
    sent = seam.delivered[0]
    assert b"Bcc:" not in sent.content.split(b"\r\n\r\n", 1)[0]  # only the draft kept Bcc


def test_a_draft_moved_to_another_account_moves_its_copy(
    stack: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, (first, second) = stack["api"], stack["users"]
    headers = as_tenant(TENANT_A)
    draft = copied_draft(stack, dovecot, headers, "Where", "/api/compose/draft")
    moved = api.put(
        f"/api/compose/drafts/{draft['id']}",
        headers=headers,
        json={"account_id": stack["ids"][1]},
    )
    assert moved.status_code == 200, moved.get_json()
    wait_copies(dovecot, second, draft["id"], one_with_subject("Where"), "copy in the second")
    wait_copies(dovecot, first, draft["id"], no_copy, "none in the first")
    # an account that is gone (its drafts with it) leaves the job nothing to do
    gone = draft_copy.store_copy(stack["runtime"], TENANT_A, uuid.UUID(draft["id"]), uuid.uuid4())
    assert gone.state == "no_account"


def test_repeated_and_concurrent_runs_leave_one_copy(
    stack: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, runtime, (alice, _other) = stack["api"], stack["runtime"], stack["users"]
    headers = as_tenant(TENANT_A)
    account = uuid.UUID(stack["ids"][0])
    draft = copied_draft(stack, dovecot, headers, "Once", "/api/compose/draft")
    draft_id = uuid.UUID(draft["id"])
    # a run that died after APPEND left an older version behind
    stale = EmailMessage()
    stale["Message-ID"] = draft_copy.draft_message_id(draft_id, alice.email)
    stale["Subject"] = "Stale"
    stale.set_content("old")
    with imap_login(dovecot, alice) as client:
        typ, _ = client.append(quote("Drafts"), "(\\Draft)", None, stale.as_bytes())
        assert typ == "OK"
    assert len(copies(dovecot, alice, draft["id"])) == 2
    # the same job again: nothing changed, so nothing is appended
    result = draft_copy.store_copy(runtime, TENANT_A, draft_id, account)
    assert result.state == "unchanged"
    # a change, then four runs at once: one copy of the newest version
    assert (
        api.put(
            f"/api/compose/drafts/{draft_id}", headers=headers, json={"subject": "Twice"}
        ).status_code
        == 200
    )
    results: list[draft_copy.CopyResult] = []

    def run() -> None:
        with scope.tenant_scope(TENANT_A):  # as the tenant's store_draft_copy jobs do
            results.append(draft_copy.store_copy(runtime, TENANT_A, draft_id, account))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert sorted(r.state for r in results).count("saved") <= 1
    wait_copies(dovecot, alice, draft["id"], one_with_subject("Twice"), "one copy left")


def test_no_copy_when_disabled(
    make_settings: Any, dovecot: Any, seam: Seam, as_tenant: Headers
) -> None:
    settings = make_settings(save_drafts_to_imap=False)
    for stack in _stack(settings, dovecot, seam, as_tenant):
        api, runtime, (alice, _other) = stack["api"], stack["runtime"], stack["users"]
        headers = as_tenant(TENANT_A)
        draft = api.post(
            "/api/compose/draft",
            headers=headers,
            json={"account_id": stack["ids"][0], "to": ["x@example.test"], "subject": "Off"},
        ).get_json()
        changed = api.put(
            f"/api/compose/drafts/{draft['id']}", headers=headers, json={"subject": "Still off"}
        )
        assert changed.status_code == 200
        runtime.queue.shutdown()  # every job queued so far has run
        assert copies(dovecot, alice, draft["id"]) == []
        with runtime.db.session() as session:
            assert session.get_one(Draft, uuid.UUID(draft["id"])).imap_uid is None


def _drafts_uidnext(dovecot: Any, user: Any) -> int:
    """UIDNEXT of the user's Drafts folder: it grows with every message ever appended."""
    with imap_login(dovecot, user) as client:
        typ, data = client.status(quote("Drafts"), "(UIDNEXT)")
        assert typ == "OK", data
        return int(data[0].decode().rsplit("UIDNEXT", 1)[1].strip(" )"))


# Long enough that the requests of one test (a compose and a send, or a save and three
# changes) all fall within it, even on a loaded machine.
DELAY_S = 3.0


@pytest.fixture
def delayed(
    make_settings: Any, dovecot: Any, seam: Seam, as_tenant: Headers
) -> Iterator[dict[str, Any]]:
    """The stack with copies DELAY_S after a save; ``before``: the first user's Drafts
    UIDNEXT when the test starts."""
    for stack in _stack(make_settings(draft_copy_delay_seconds=DELAY_S), dovecot, seam, as_tenant):
        yield {**stack, "before": _drafts_uidnext(dovecot, stack["users"][0])}


class _Recording:
    """The app's job queue, recording what is queued (task, delay, arguments)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.jobs: list[tuple[str, float, dict[str, str]]] = []

    def enqueue(self, task: str, job_id: str, **kwargs: str) -> None:
        self.jobs.append((task, 0.0, kwargs))
        self.queue.enqueue(task, job_id, **kwargs)

    def enqueue_later(self, seconds: float, task: str, job_id: str, **kwargs: str) -> None:
        self.jobs.append((task, seconds, kwargs))
        self.queue.enqueue_later(seconds, task, job_id, **kwargs)

    def defer(self, seconds: float, task: str, key: str, **kwargs: str) -> None:
        self.jobs.append((task, seconds, kwargs))
        self.queue.defer(seconds, task, key, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)


def test_a_draft_sent_at_once_is_never_uploaded(
    delayed: dict[str, Any], dovecot: Any, seam: Seam, as_tenant: Headers
) -> None:
    api, runtime, (alice, _other) = delayed["api"], delayed["runtime"], delayed["users"]
    headers = as_tenant(TENANT_A)
    runtime.queue = recording = _Recording(runtime.queue)
    body = {"account_id": delayed["ids"][0], "to": ["bob@example.test"], "subject": "Now"}
    drafts = [api.post("/api/compose", headers=headers, json=body).get_json() for _ in "ab"]
    for draft in drafts:
        wait_state(api, headers, send(api, headers, draft["id"])["id"], "sent")
    time.sleep(DELAY_S + 0.5)  # the delayed copies have run by now
    runtime.queue.shutdown()  # and so has every other job
    assert len(seam.delivered) == 2
    assert _drafts_uidnext(dovecot, alice) == delayed["before"]  # nothing was ever appended
    # no copy was ever started, so the sends queued no removal (no IMAP session for it)
    copy_jobs = [job for job in recording.jobs if job[0] == draft_copy.DRAFT_COPY_TASK]
    assert [(delay, job["reason"]) for _, delay, job in copy_jobs] == [
        (DELAY_S, draft_copy.SAVED),
        (DELAY_S, draft_copy.SAVED),
    ]


def test_a_delayed_save_of_a_queued_or_sent_draft_reads_it_once(
    delayed: dict[str, Any], as_tenant: Headers
) -> None:
    """Most delayed saves find the draft sent or queued already: one read answers them,
    without the draft's lock, the account or its password."""
    api, runtime = delayed["api"], delayed["runtime"]
    headers = as_tenant(TENANT_A)
    account = uuid.UUID(delayed["ids"][0])
    body = {"account_id": str(account), "to": ["bob@example.test"], "subject": "Soon"}
    later = {**body, "send_at": "2099-01-01T00:00:00Z"}
    queued = api.post("/api/compose", headers=headers, json=later).get_json()
    assert send(api, headers, queued["id"])["state"] == "queued"
    sent = api.post("/api/compose", headers=headers, json=body).get_json()
    outbox_id = send(api, headers, sent["id"])["id"]
    wait_state(api, headers, outbox_id, "sent")
    wait_sent_copy(api, headers, outbox_id)  # the send's last write: nothing runs beside
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(runtime.db.engine, "before_cursor_execute", count)
    try:
        with scope.tenant_scope(TENANT_A):
            found = [
                draft_copy.store_copy(
                    runtime, TENANT_A, uuid.UUID(draft["id"]), account, draft_copy.SAVED
                ).state
                for draft in (queued, sent)
            ]
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", count)
    assert found == ["queued", "left"]
    assert len(statements) == 2, statements


def _claim_meanwhile(runtime: Any, draft_id: uuid.UUID, **values: Any) -> Callable[..., bytes]:
    """``build_message`` for a copy run, changing the draft after the run read it: the
    moment a concurrent send's claim (or a save) can come between reading and appending."""
    real = draft_copy.build_message
    values = {"updated_at": Draft.updated_at, **values}  # kept unless given

    def build(out: Any) -> bytes:
        with runtime.db.session() as session:
            session.execute(
                update(Draft)
                .where(Draft.id == draft_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return real(out)

    return build


@pytest.fixture
def unqueued(
    make_settings: Any, dovecot: Any, seam: Seam, as_tenant: Headers
) -> Iterator[dict[str, Any]]:
    """The stack whose saves' copy jobs are due only after the test (dropped at its end):
    the runs that matter are the ones the test makes."""
    settings = make_settings(draft_copy_delay_seconds=300)
    yield from _stack(settings, dovecot, seam, as_tenant)


def _new_draft(stack: dict[str, Any], headers: dict[str, str], subject: str) -> uuid.UUID:
    body = {"account_id": stack["ids"][0], "to": ["bob@example.test"], "subject": subject}
    saved = stack["api"].post("/api/compose/draft", headers=headers, json=body)
    assert saved.status_code == 201, saved.get_json()
    return uuid.UUID(saved.get_json()["id"])


def _marked(runtime: Any, draft_id: uuid.UUID) -> bool:
    with runtime.db.session() as session:
        return session.get_one(Draft, draft_id).imap_copy_started


def test_a_copy_run_and_a_send_claim_exclude_each_other(
    unqueued: dict[str, Any],
    dovecot: Any,
    as_tenant: Headers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run marks the draft (committed) before it appends, on the condition that no send
    has claimed it and it did not change; otherwise it appends nothing. A send removes a
    copy only from a marked draft."""
    api, runtime, (alice, _other) = unqueued["api"], unqueued["runtime"], unqueued["users"]
    headers = as_tenant(TENANT_A)
    account = uuid.UUID(unqueued["ids"][0])
    before = _drafts_uidnext(dovecot, alice)
    claimed, changed = (
        _new_draft(unqueued, headers, "Claimed"),
        _new_draft(unqueued, headers, "Changed"),
    )
    meanwhile = {
        claimed: {"outbox_id": uuid.uuid4()},  # a send's claim, nothing else
        changed: {"subject": "Newer", "updated_at": datetime.now(UTC)},  # a save
    }
    for draft_id, values in meanwhile.items():
        with monkeypatch.context() as patch:
            build = _claim_meanwhile(runtime, draft_id, **values)
            patch.setattr(draft_copy, "build_message", build)
            result = draft_copy.store_copy(runtime, TENANT_A, draft_id, account)
        assert result.state == "superseded"
        assert not _marked(runtime, draft_id)
    assert _drafts_uidnext(dovecot, alice) == before  # neither run appended
    # unhindered, a run marks the draft, then appends
    assert draft_copy.store_copy(runtime, TENANT_A, changed, account).state == "saved"
    assert _marked(runtime, changed)
    assert _drafts_uidnext(dovecot, alice) == before + 1
    # the marked draft's send removes its copy; the unmarked one's queues no removal
    runtime.queue = recording = _Recording(runtime.queue)
    fresh = _new_draft(unqueued, headers, "Fresh")
    for draft_id in (changed, fresh):
        wait_state(api, headers, send(api, headers, str(draft_id))["id"], "sent")
    runtime.queue.shutdown()  # every job queued so far has run
    task = draft_copy.DRAFT_COPY_TASK
    removals = [
        job["draft_id"] for name, delay, job in recording.jobs if name == task and not delay
    ]
    assert removals == [str(changed)]
    assert copies(dovecot, alice, str(changed)) == []


def test_a_saved_draft_is_uploaded_once_its_delay_is_over(
    delayed: dict[str, Any], dovecot: Any, as_tenant: Headers
) -> None:
    api, runtime, (alice, _other) = delayed["api"], delayed["runtime"], delayed["users"]
    headers = as_tenant(TENANT_A)
    saved = api.post(
        "/api/compose/draft",
        headers=headers,
        json={"account_id": delayed["ids"][0], "subject": "Later"},
    )
    draft_id = saved.get_json()["id"]
    for n in range(3):  # changed again within the delay
        api.put(f"/api/compose/drafts/{draft_id}", headers=headers, json={"subject": f"v{n}"})
    assert copies(dovecot, alice, draft_id) == []
    wait_copies(dovecot, alice, draft_id, one_with_subject("v2"), "the copy, once due")
    time.sleep(DELAY_S)  # every delayed run is over: the later ones found it unchanged
    assert _drafts_uidnext(dovecot, alice) == delayed["before"] + 1  # uploaded once
    # a delayed run for a draft discarded since leaves removal to the discard's own run
    assert api.delete(f"/api/compose/drafts/{draft_id}", headers=headers).status_code == 204
    account = uuid.UUID(delayed["ids"][0])
    late = draft_copy.store_copy(runtime, TENANT_A, uuid.UUID(draft_id), account, draft_copy.SAVED)
    assert late.state == "left"
    wait_copies(dovecot, alice, draft_id, no_copy, "the copy removed by the discard")


class _BrokerDown:
    """A job queue whose broker refuses every message (the seam a real outage hits)."""

    def enqueue(self, task: str, job_id: str, **kwargs: str) -> None:
        raise ConnectionError("broker unreachable")

    def enqueue_later(self, seconds: float, task: str, job_id: str, **kwargs: str) -> None:
        raise ConnectionError("broker unreachable")

    def defer(self, seconds: float, task: str, key: str, **kwargs: str) -> None:
        raise ConnectionError("broker unreachable")

    def cancel(self, task: str, key: str) -> None:
        raise ConnectionError("broker unreachable")


def test_a_draft_is_saved_when_its_copy_cannot_be_queued(
    make_settings: Any, as_tenant: Headers
) -> None:
    with running_app(make_settings()) as (api, runtime):
        headers = as_tenant(TENANT_A)
        add_account(api, headers, "alice@example.test")
        embedded, runtime.queue = runtime.queue, _BrokerDown()
        try:
            _save_change_delete(api, headers)
        finally:
            runtime.queue = embedded  # shut down with the app


def _save_change_delete(api: FlaskClient, headers: dict[str, str]) -> None:
    """Save, change, read and delete a draft: every answer as if nothing were wrong."""
    saved = api.post("/api/compose/draft", headers=headers, json={"subject": "Kept"})
    assert saved.status_code == 201, saved.get_json()
    draft_id = saved.get_json()["id"]
    changed = api.put(
        f"/api/compose/drafts/{draft_id}", headers=headers, json={"subject": "Still kept"}
    )
    assert changed.status_code == 200
    stored = api.get(f"/api/compose/drafts/{draft_id}", headers=headers).get_json()
    assert stored["subject"] == "Still kept"
    assert api.delete(f"/api/compose/drafts/{draft_id}", headers=headers).status_code == 204


def test_a_draft_sent_at_once_leaves_no_deferred_copy_in_the_broker(
    make_settings: Any, redis_url: str, as_tenant: Headers
) -> None:
    """With Celery, a saved draft's copy waits in Redis; sending the draft drops it, so
    neither the copy nor a run that would find the draft queued ever becomes a task."""
    client = redis.Redis.from_url(redis_url)
    settings = make_settings(redis_url=redis_url, draft_copy_delay_seconds=DELAY_S)
    with running_app(settings) as (api, runtime):
        headers = as_tenant(TENANT_A)
        add_account(api, headers, "alice@example.test")
        kept = api.post("/api/compose", headers=headers, json={"subject": "Kept"}).get_json()
        body = {"subject": "Sent", "to": ["bob@example.test"]}
        sent = api.post("/api/compose", headers=headers, json=body).get_json()
        assert client.zcard(DEFERRED) == 2
        send(api, headers, sent["id"])
        (waiting,) = client.zrange(DEFERRED, 0, -1)
        assert waiting.decode() == f"{draft_copy.DRAFT_COPY_TASK}:{kept['id']}:{kept['account_id']}"
        assert isinstance(runtime.queue, CeleryQueue)
        assert runtime.queue.publish_due(now=time.time() + DELAY_S + 1) == 1
        tasks = [json.loads(raw)["headers"] for raw in client.lrange("celery", 0, -1)]
        copies = [t for t in tasks if t["task"] == draft_copy.DRAFT_COPY_TASK]
        assert [t["task"] for t in tasks].count("send_email") == 1
        assert len(copies) == 1 and kept["id"] in copies[0]["kwargsrepr"]
