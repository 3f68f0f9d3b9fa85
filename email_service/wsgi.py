"""WSGI entry point for Gunicorn: ``email_service.wsgi:app``."""

from email_service.app import create_app

app = create_app(background=True)
