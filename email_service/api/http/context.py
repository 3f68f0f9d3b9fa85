"""Per-process runtime and per-request tenant, as the blueprints see them."""

from __future__ import annotations

from flask import current_app, g

from email_service.services.runtime import Runtime

EXTENSION = "email_service"


def runtime() -> Runtime:
    """The process's runtime (database, vault, settings)."""
    value: Runtime = current_app.extensions[EXTENSION]
    return value


def tenant_id() -> str:
    """The tenant this request acts for (set by the auth hook)."""
    value: str = g.tenant_id
    return value
