"""Use cases: take a session and gateways, return plain data. Never Flask or Celery."""
