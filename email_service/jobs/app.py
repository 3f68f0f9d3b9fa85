"""The Celery application object for ``celery -A email_service.jobs.app``."""

from __future__ import annotations

from email_service.files import private_umask
from email_service.jobs import make_celery

private_umask()  # a worker started as `celery -A ...` writes private files too
celery_app = make_celery()
