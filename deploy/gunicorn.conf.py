"""Gunicorn settings for `email-service serve`, read from the service's environment.

gthread workers (processes x threads), restart after 10,000 requests (+ up to 1,000
jitter so workers do not restart together), graceful shutdown. Logs: JSON lines, access
log in LOG_DIR/access.log. Metrics: one prometheus-client multiprocess directory per
server, emptied when the master starts; a dead worker's samples are archived.
"""

import os
from pathlib import Path
from typing import Any

from email_service.config import load_settings
from email_service.observability import gunicorn_logging

_settings = load_settings()
# Set before any worker imports prometheus_client (it picks multiprocess mode at import).
_own_metrics = _settings.metrics_path / f"api-{_settings.flask_port}"
METRICS_DIR = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_own_metrics.resolve())))

bind = f"{_settings.flask_host}:{_settings.flask_port}"
worker_class = "gthread"
# Embedded default (no Redis): one process, so in-memory rate limits and the
# in-process job runner are shared by all requests; threads still give concurrency.
workers = 1 if _settings.embedded else _settings.gunicorn_workers
threads = _settings.gunicorn_threads
timeout = _settings.gunicorn_timeout
graceful_timeout = 30  # seconds for in-flight requests after SIGTERM
keepalive = 5
max_requests = 10000
max_requests_jitter = 1000
worker_tmp_dir = "/dev/shm"  # noqa: S108 - heartbeat files off the (possibly slow) overlay disk
control_socket_disable = True  # one per instance would collide in a shared directory
loglevel = _settings.log_level.lower()
logger_class = "email_service.observability.gunicorn_logging.JsonLogger"
logconfig_dict = gunicorn_logging.logconfig(_settings.log_level, _settings.log_dir)
accesslog = None  # written by logger_class through logconfig_dict's access_file
errorlog = "-"
# X-Forwarded-Proto and friends only from trusted proxies: none by default. Behind
# TRUSTED_PROXIES proxies the API must be reachable only through them (the client IP is
# then taken by ProxyFix, which counts hops instead of trusting addresses).
# X-Forwarded-* only from the proxy's network (FORWARDED_ALLOW_IPS), never from anyone.
forwarded_allow_ips = ",".join(_settings.forwarded_allow_ips) if _settings.trusted_proxies else ""


def on_starting(server: Any) -> None:
    """Master start: empty the metrics directory of a previous run's samples."""
    from email_service.observability import metrics_files  # noqa: PLC0415 - after the env

    metrics_files.prepare(METRICS_DIR)


def child_exit(server: Any, worker: Any) -> None:
    """A worker died (max_requests, timeout, crash): archive its samples, drop its gauges."""
    from email_service.observability import metrics_files  # noqa: PLC0415 - after the env

    metrics_files.process_exited(worker.pid, METRICS_DIR)
