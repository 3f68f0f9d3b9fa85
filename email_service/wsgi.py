"""WSGI entry point for Gunicorn: ``email_service.wsgi:app``."""

from email_service.app import create_app
from email_service.files import private_umask

private_umask()  # what the API writes (SQLite, blobs, logs) is private, whatever the umask
app = create_app(background=True)
