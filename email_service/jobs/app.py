"""The Celery application object for ``celery -A email_service.jobs.app``."""

from __future__ import annotations

from email_service.jobs import make_celery

celery_app = make_celery()
