"""JSON structured logs: one object per line, fixed fields first.

``timestamp``, ``level``, ``service``, ``request_id``, ``tenant_id``, ``message`` and, for
timed events, ``duration_ms``. Standard-library loggers (Gunicorn, Celery, SQLAlchemy) go
through the same formatter. Secrets never reach a line: values under secret-looking keys
are replaced, and bearer tokens and Fernet tokens inside messages are masked.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from email_service.files import private_dir
from email_service.observability.logfiles import SharedRotatingFileHandler

SERVICE = "email_service"
# Keys whose values are never logged, whatever their level.
SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|api[_-]?key|credential", re.I)
# A JWT, a bearer header or a Fernet token inside free text.
SECRET_TEXT = re.compile(r"(?i:bearer\s+)\S+|eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*|gAAAAA[\w=-]{40,}")
# SQLAlchemy's error text repeats the statement's parameters on one line (message bodies,
# ciphertexts): the statement stays, the values go.
SQL_PARAMETERS = re.compile(r"^\[parameters: .*\]$", re.MULTILINE)
REDACTED = "[redacted]"
# Rotate at 10 MiB, keep 10 files: the same as the containers' json-file logging options.
ROTATE_BYTES = 10 * 1024 * 1024
ROTATE_KEEP = 10
# Loggers whose lower levels print data, not events: SQLAlchemy's INFO/DEBUG lines carry
# statement parameters (message bodies, ciphertexts), so LOG_LEVEL=DEBUG stops above them.
DATA_LOGGERS = {"sqlalchemy.engine": logging.WARNING, "sqlalchemy.pool": logging.WARNING}
# WSGI environ key where the API leaves the request's tenant for Gunicorn's access log.
TENANT_ENVIRON = "email_service.tenant_id"


# Any text SECRET_TEXT or SQL_PARAMETERS could change contains one of these: a value
# without them (most are: a path, an id, a host) is kept without running both rewrites.
_MAYBE_SECRET = re.compile(r"(?i:bearer)|eyJ|gAAAAA|^\[parameters: ", re.MULTILINE)
# Whether a key names a secret, per key (the few keys of a service's lines, remembered).
_SECRET_KEY: dict[str, bool] = {}
_SECRET_KEYS_REMEMBERED = 1024


def _secret_key(key: str) -> bool:
    found = _SECRET_KEY.get(key)
    if found is None:
        found = SECRET_KEYS.search(key) is not None
        if len(_SECRET_KEY) < _SECRET_KEYS_REMEMBERED:
            _SECRET_KEY[key] = found
    return found


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if _secret_key(key):
            event[key] = REDACTED
        else:
            value = event[key]
            if isinstance(value, str) and _MAYBE_SECRET.search(value) is not None:
                text = SECRET_TEXT.sub(REDACTED, value)
                event[key] = SQL_PARAMETERS.sub(f"[parameters: {REDACTED}]", text)
    return event


def _shape(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Put the fixed fields first, in their order; the rest follow."""
    shaped: dict[str, Any] = {
        "timestamp": event.pop("timestamp", None),
        "level": str(event.pop("level", "info")).upper(),
        "service": event.pop("service", SERVICE),
        "request_id": event.pop("request_id", None),
        "tenant_id": event.pop("tenant_id", None),
        "message": event.pop("event", ""),
    }
    shaped.update(event)
    return shaped


def _processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.stdlib.ExtraAdder(),
        structlog.processors.format_exc_info,
    ]


class Rendered(str):
    """A line rendered already by :func:`log_event` (one JSON object): written as it is."""

    __slots__ = ()


_RENDER = structlog.processors.JSONRenderer()
# What that renderer does (json.dumps with structlog's fallback for other types), with
# one encoder made once instead of one per line.
_ENCODER = json.JSONEncoder(default=_RENDER._dumps_kw["default"])
# Key sequences of lines without a secret-looking key (a service logs the same few).
_PLAIN_KEYS: set[tuple[str, ...]] = set()


def _maybe_secret(event: dict[str, Any]) -> bool:
    """False only if :func:`_redact` would leave ``event`` as it is: no secret-looking key,
    and none of its text values holds what the rewrites look for (checked in one search
    over all of them, one per line: a value that matches alone matches there too)."""
    keys = tuple(event)
    if keys not in _PLAIN_KEYS:
        if any(_secret_key(key) for key in keys):
            return True
        if len(_PLAIN_KEYS) < _SECRET_KEYS_REMEMBERED:
            _PLAIN_KEYS.add(keys)
    text = "\n".join([value for value in event.values() if isinstance(value, str)])
    return _MAYBE_SECRET.search(text) is not None


def log_event(
    logger: logging.Logger, event: str, fields: dict[str, Any], as_extra: bool = False
) -> None:
    """Log ``event`` at INFO with ``fields``: the line a structlog logger would write (the
    same fields, order, redaction and JSON), rendered here in one pass; with ``as_extra``,
    the line of ``logger.info(event, extra=fields)``.

    For the lines written per request (ours, Gunicorn's access line), where structlog's
    processors and then the formatter's, each copying the event, cost more than the rest
    of a small request. The record carries the finished line (:class:`Rendered`); the
    handlers, their levels and files are the same.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    line: dict[str, Any] = {**structlog.contextvars.get_contextvars(), "event": event}
    if not as_extra:  # a structlog call's keywords come before what its processors add
        line.update(fields)
    line["level"] = "info"
    line["logger"] = logger.name
    line["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if as_extra:  # ExtraAdder runs after them
        line.update(fields)
    if _maybe_secret(line):
        _redact(None, "", line)  # in place
    text = _ENCODER.encode(_shape(None, "", line))
    logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0, Rendered(text), (), None))


class _FormatOnce(structlog.stdlib.ProcessorFormatter):
    """A ProcessorFormatter that renders a record once for all the handlers it serves.

    A line goes to stderr and to the log file; the processors (redaction, shaping, JSON)
    would otherwise run again for each handler and give the same text. Logging calls a
    record's handlers one after the other in the thread that logged it, so the last
    record and its line, kept per thread, are what the next handler asks for. (Nothing
    is stored on the record: another formatter would print it as an extra field.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last = threading.local()

    def format(self, record: logging.LogRecord) -> str:
        if type(record.msg) is Rendered:
            return str(record.msg)
        done = getattr(self.last, "done", None)
        if done is not None and done[0] is record:
            return str(done[1])
        line = super().format(record)
        self.last.done = (record, line)
        return line


def json_formatter() -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every line: one JSON object with the fixed fields first."""
    return _FormatOnce(
        foreign_pre_chain=_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _redact,
            _shape,
            structlog.processors.JSONRenderer(),
        ],
    )


def configure_logging(level: str = "INFO", log_dir: Path | None = None) -> None:
    """Send every logger's records, as JSON, to stderr and the log files."""
    formatter = json_formatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        private_dir(log_dir)
        handlers.append(log_file(log_dir / "email-service.log", logging.DEBUG))
        handlers.append(log_file(log_dir / "error.log", logging.ERROR))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings become JSON lines too
    for name, floor in DATA_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, logging.getLevelName(level)))
    structlog.configure(
        processors=[*_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def log_file(path: Path, level: int) -> logging.Handler:
    """A size-rotated file that every process of a server may write (see logfiles)."""
    return SharedRotatingFileHandler(path, ROTATE_BYTES, ROTATE_KEEP, level)


def get_logger(name: str) -> Any:
    """A structlog logger bound to ``name``."""
    return structlog.get_logger(name)
