"""Gunicorn settings for `email-service serve`, read from the service's environment.

gthread workers (processes x threads), restart after 10,000 requests (+ up to 1,000
jitter so workers do not restart together), graceful shutdown, access log in LOG_DIR.
"""

from email_service.config import load_settings

_settings = load_settings()

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
accesslog = str(_settings.log_dir / "access.log")
errorlog = "-"
access_log_format = '%(h)s - "%(r)s" %(s)s %(B)s %(D)sus "%(a)s" %({x-request-id}o)s'
forwarded_allow_ips = "127.0.0.1"
