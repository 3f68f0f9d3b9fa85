"""Gunicorn's own logs in the service's JSON: its error log through the same formatter
(``logconfig_dict``), its access log as one JSON object per request in
``LOG_DIR/access.log`` (``logger_class``), both rotated like the service's files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from email_service.files import private_dir, private_umask
from email_service.observability.logging import (
    ROTATE_BYTES,
    ROTATE_KEEP,
    TENANT_ENVIRON,
    log_event,
)

FORMATTER = "email_service.observability.logging.json_formatter"
HANDLER = "email_service.observability.logfiles.SharedRotatingFileHandler"


def _file(path: Path, level: str) -> dict[str, Any]:
    return {
        "class": HANDLER,
        "formatter": "json",
        "level": level,
        "filename": str(path),
        "max_bytes": ROTATE_BYTES,
        "backup_count": ROTATE_KEEP,
    }


def logconfig(level: str, log_dir: Path) -> dict[str, Any]:
    """Gunicorn's ``logconfig_dict``: JSON to stderr and the three log files."""
    private_umask()  # the master opens the log files before any app code runs
    private_dir(log_dir)
    stderr = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": FORMATTER}},
        "handlers": {
            "console": stderr,
            "error_console": stderr,  # Gunicorn's defaults name it; same place
            "service_file": _file(log_dir / "email-service.log", "DEBUG"),
            "error_file": _file(log_dir / "error.log", "ERROR"),
            "access_file": _file(log_dir / "access.log", "INFO"),
        },
        "root": {"level": level, "handlers": ["console", "service_file", "error_file"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": ["access_file"], "propagate": False},
        },
    }


class JsonLogger(Logger):  # type: ignore[misc]  # gunicorn has no type hints
    """Gunicorn's logger, writing each access as fields rather than a formatted line."""

    def access(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: dt.timedelta
    ) -> None:
        """One JSON line per request: the fields, never the query string or any header
        but the user agent (tokens travel in headers, search terms in the query)."""
        if not self.access_log_enabled:
            return
        fields = access_fields(resp, environ, request_time)
        message = f"{fields['method']} {fields['path']} {fields['status']}"
        log_event(self.access_log, message, fields, as_extra=True)  # as info(extra=fields)


def access_fields(resp: Any, environ: dict[str, Any], request_time: dt.timedelta) -> dict[str, Any]:
    """What the access line says about one request."""
    headers = {str(k).lower(): v for k, v in resp.headers}
    return {
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO"),
        "status": resp.status_code,
        "bytes": getattr(resp, "sent", None),
        "duration_ms": round(request_time.total_seconds() * 1000, 2),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "user_agent": environ.get("HTTP_USER_AGENT"),
        "request_id": headers.get("x-request-id"),
        "tenant_id": environ.get(TENANT_ENVIRON),
    }
