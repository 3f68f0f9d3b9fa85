"""JSON log lines: the fixed fields, secrets masked, SQL parameters never logged, files
rotated safely by several processes, the request id carried into background jobs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog

from email_service.jobs.queues import EmbeddedQueue
from email_service.observability import logging as logging_module
from email_service.observability.gunicorn_logging import access_fields
from email_service.observability.logging import (
    TENANT_ENVIRON,
    configure_logging,
    get_logger,
    json_formatter,
)

FIELDS = ("timestamp", "level", "service", "request_id", "tenant_id", "message")
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjbGkiLCJ0ZW5hbnRzIjpbImEiXX0.c2lnbmF0dXJlLXNpZw"
FERNET = "gAAAAABm" + "x" * 60
# Writers for the rotation test: each appends LINES JSON lines through the shared handler.
WRITERS, LINES = 4, 2000
WRITE = """
import logging, sys
from email_service.observability.logfiles import SharedRotatingFileHandler
handler = SharedRotatingFileHandler(sys.argv[1], 4096, 400)
handler.setFormatter(logging.Formatter('{"writer": %(writer)s, "n": %(n)s, "pad": "%(message)s"}'))
log = logging.getLogger("w")
log.addHandler(handler)
log.setLevel(logging.INFO)
for n in range(int(sys.argv[3])):
    log.info("x" * 40, extra={"writer": sys.argv[2], "n": n})
"""


def _render(record: logging.LogRecord) -> dict[str, Any]:
    line = json_formatter().format(record)
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def _record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("email_service.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_stdlib_line_has_the_spec_fields_in_order() -> None:
    structlog.contextvars.bind_contextvars(request_id="req-1", tenant_id="tenant-a")
    try:
        line = _render(_record("account %s synced", "x", duration_ms=12.5))
    finally:
        structlog.contextvars.clear_contextvars()
    assert tuple(line)[: len(FIELDS)] == FIELDS
    assert line["service"] == "email_service" and line["level"] == "INFO"
    assert (line["request_id"], line["tenant_id"]) == ("req-1", "tenant-a")
    assert line["message"] == "account x synced" and line["duration_ms"] == 12.5
    assert dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).tzinfo


def test_structlog_line_goes_through_the_same_formatter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", tmp_path)
    try:
        get_logger("email_service.test").info("request", duration_ms=3.2, status=200)
    finally:
        configure_logging("INFO", None)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert tuple(line)[: len(FIELDS)] == FIELDS
    assert line["message"] == "request" and line["duration_ms"] == 3.2
    logged = (tmp_path / "email-service.log").read_text().strip().splitlines()
    assert json.loads(logged[-1])["message"] == "request"
    assert not (tmp_path / "error.log").exists()  # INFO stays out of error.log


def test_a_record_is_rendered_once_for_every_handler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shaped: list[str] = []
    real = logging_module._shape

    def counting(logger: Any, name: str, event: Any) -> Any:
        shaped.append(str(event.get("event")))
        return real(logger, name, event)

    monkeypatch.setattr(logging_module, "_shape", counting)
    configure_logging("ERROR", tmp_path)  # stderr, email-service.log and error.log
    try:
        get_logger("email_service.test").error("disk full", free_bytes=0)
    finally:
        configure_logging("INFO", None)
    lines = [
        capsys.readouterr().err.strip().splitlines()[-1],
        (tmp_path / "email-service.log").read_text().strip(),
        (tmp_path / "error.log").read_text().strip(),
    ]
    assert len(set(lines)) == 1 and json.loads(lines[0])["free_bytes"] == 0
    assert shaped == ["disk full"]


def test_a_record_through_two_formatters_gets_no_extra_field() -> None:
    record = _record("hello %s", "world")
    first, second = (json.loads(f.format(record)) for f in (json_formatter(), json_formatter()))
    assert list(first) == list(second)  # the same fields: nothing left on the record
    assert second["message"] == "hello world"


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({"password": "hunter2-canary"}, "login"),
        ({"imap_password": "hunter2-canary"}, "login"),
        ({"token": TOKEN}, "token issued"),
        ({}, f"Authorization: Bearer {TOKEN}"),
        ({}, f"decoded {TOKEN}"),
        ({}, f"ciphertext {FERNET}"),
    ],
)
def test_secrets_are_masked(extra: dict[str, str], text: str) -> None:
    rendered = json.dumps(_render(_record(text, **extra)))
    assert "hunter2-canary" not in rendered and TOKEN not in rendered and FERNET not in rendered
    assert "[redacted]" in rendered


def test_sql_parameters_in_error_text_are_masked() -> None:
    error = (
        "(psycopg.errors.UniqueViolation) duplicate key\n"
        "[SQL: INSERT INTO email_message (body_text) VALUES (%(body_text)s)]\n"
        "[parameters: {'body_text': 'Dear Bob, the canary-body-text'}]\n"
        "(Background on this error at: https://sqlalche.me/e/21/gkpj)"
    )
    line = _render(_record("insert failed: %s", error))
    assert "canary-body-text" not in line["message"]
    assert "[SQL: INSERT INTO email_message" in line["message"]


@pytest.mark.parametrize(
    "value",
    [
        "GET /api/accounts",
        "bearer x",
        "BeArEr\tx",
        f"/api/{TOKEN}",
        f"x{FERNET}y",
        "gAAAAA" + "a" * 39,
        "[parameters: {'a': 1}]",
        "error\n[parameters: {'a': 'b'}]\nmore",
        "not at the start [parameters: {'a': 1}]",
        "eyJ but no token",
    ],
)
def test_the_quick_check_skips_only_values_the_rewrites_keep(value: str) -> None:
    """A string the pre-check lets through unchanged is one both rewrites leave as it is."""
    full = logging_module.SQL_PARAMETERS.sub(
        "[parameters: [redacted]]", logging_module.SECRET_TEXT.sub("[redacted]", value)
    )
    assert logging_module._redact(None, "", {"field": value})["field"] == full
    if full != value:
        assert logging_module._MAYBE_SECRET.search(value) is not None
        # log_event's check of a whole line, the value among others
        line = {"request_id": "req-1", "field": value, "status": 200, "path": "/api/x"}
        assert logging_module._maybe_secret(line)


def test_a_line_with_a_secret_key_is_redacted_every_time() -> None:
    for _ in range(2):  # the second time from the remembered key sequences
        assert logging_module._maybe_secret({"path": "/p", "api_key": "k"})
        assert not logging_module._maybe_secret({"path": "/p", "status": 200})


def test_secret_keys_are_told_by_name_every_time() -> None:
    for _ in range(2):  # the second time from the remembered answers
        event = logging_module._redact(None, "", {"api_key": "k", "Token": "t", "path": "/p"})
        assert event == {"api_key": "[redacted]", "Token": "[redacted]", "path": "/p"}


def test_debug_level_keeps_sqlalchemy_parameters_out(tmp_path: Path) -> None:
    configure_logging("DEBUG", None)
    try:
        assert not logging.getLogger("sqlalchemy.engine.Engine").isEnabledFor(logging.INFO)
        assert logging.getLogger("email_service").isEnabledFor(logging.DEBUG)
    finally:
        configure_logging("INFO", None)


def test_several_processes_rotate_one_file_without_losing_or_mixing_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.log"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITE, str(path), str(w), str(LINES)], cwd=root)
        for w in range(WRITERS)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * WRITERS
    files = sorted(tmp_path.glob("shared.log*"))
    lines = [line for f in files if f.suffix != ".lock" for line in f.read_text().splitlines()]
    parsed = [json.loads(line) for line in lines]  # every line whole: no interleaving
    seen = {(p["writer"], p["n"]) for p in parsed}
    assert len(parsed) == len(seen) == WRITERS * LINES  # none lost, none twice
    assert len([f for f in files if f.suffix != ".lock"]) > 5  # it did rotate
    sizes = [f.stat().st_size for f in files if f.suffix not in (".lock",)]
    assert max(sizes) < 4 * 4096  # rotated near the limit, not once per writer


def test_embedded_jobs_log_with_the_request_id_that_queued_them() -> None:
    seen: dict[str, Any] = {}
    done = threading.Event()

    def handler(job_id: str, **_: str) -> None:
        seen.update(structlog.contextvars.get_contextvars())
        done.set()

    queue = EmbeddedQueue({"sync_imap_account": handler})
    structlog.contextvars.bind_contextvars(request_id="req-embedded", tenant_id="tenant-a")
    try:
        queue.enqueue("sync_imap_account", "job-1", account_id="a", tenant_id="tenant-a")
    finally:
        structlog.contextvars.clear_contextvars()
    assert done.wait(10)
    queue.shutdown()
    assert seen["request_id"] == "req-embedded" and seen["tenant_id"] == "tenant-a"


class _Response:
    status_code = 201
    sent = 321
    headers = [("Content-Type", "application/json"), ("X-Request-ID", "req-9")]


def test_access_line_fields_leave_query_and_headers_out() -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/sync/search",
        "QUERY_STRING": "q=secret+words",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_USER_AGENT": "curl/8",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
        TENANT_ENVIRON: "tenant-a",
    }
    fields = access_fields(_Response(), environ, dt.timedelta(milliseconds=12.5))
    assert fields == {
        "method": "GET",
        "path": "/api/sync/search",
        "status": 201,
        "bytes": 321,
        "duration_ms": 12.5,
        "remote_addr": "203.0.113.9",
        "user_agent": "curl/8",
        "request_id": "req-9",
        "tenant_id": "tenant-a",
    }


def test_a_line_rendered_in_one_pass_is_the_structlog_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fields = {"method": "GET", "path": "/api/x", "status": 200, "authorization": "Bearer x"}
    configure_logging("INFO", tmp_path)
    structlog.contextvars.bind_contextvars(request_id="req-9", tenant_id="tenant-a")
    try:
        get_logger("email_service.http").info("request", **fields)
        logging_module.log_event(logging.getLogger("email_service.http"), "request", fields)
        logging.getLogger("email_service.http").setLevel(logging.WARNING)
        logging_module.log_event(logging.getLogger("email_service.http"), "request", fields)
    finally:
        structlog.contextvars.clear_contextvars()
        logging.getLogger("email_service.http").setLevel(logging.NOTSET)
        configure_logging("INFO", None)
    err = capsys.readouterr().err.strip().splitlines()
    filed = (tmp_path / "email-service.log").read_text().strip().splitlines()
    assert len(err) == len(filed) == 2  # nothing below the logger's level
    structlog_line, one_pass = (json.loads(line) for line in err)
    assert list(one_pass) == list(structlog_line) and one_pass["authorization"] == "[redacted]"
    assert {**one_pass, "timestamp": None} == {**structlog_line, "timestamp": None}
    assert filed[1] == err[1]


def test_a_line_rendered_as_extra_is_the_stdlib_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fields = {"method": "GET", "path": "/api/x", "status": 200, "request_id": "req-2"}
    configure_logging("INFO", None)
    structlog.contextvars.bind_contextvars(request_id="req-1", tenant_id="tenant-a")
    access = logging.getLogger("gunicorn.access")
    try:
        access.info("GET /api/x 200", extra=fields)
        logging_module.log_event(access, "GET /api/x 200", fields, as_extra=True)
    finally:
        structlog.contextvars.clear_contextvars()
        configure_logging("INFO", None)
    stdlib_line, one_pass = (json.loads(x) for x in capsys.readouterr().err.splitlines()[-2:])
    assert list(one_pass) == list(stdlib_line) and one_pass["request_id"] == "req-2"
    assert {**one_pass, "timestamp": None} == {**stdlib_line, "timestamp": None}


def test_a_token_in_a_value_of_a_one_pass_line_is_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fields = {"method": "GET", "path": f"/api/x/{TOKEN}", "status": 200}
    configure_logging("INFO", None)
    structlog.contextvars.bind_contextvars(request_id="req-3")
    try:
        for _ in range(2):  # the second time with the key sequence remembered
            logging_module.log_event(logging.getLogger("email_service.http"), "request", fields)
    finally:
        structlog.contextvars.clear_contextvars()
        configure_logging("INFO", None)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()[-2:]]
    assert [line["path"] for line in lines] == ["/api/x/[redacted]"] * 2
    assert fields["path"] == f"/api/x/{TOKEN}"  # the caller's fields are not changed
