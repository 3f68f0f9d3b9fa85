"""/health (liveness, no auth, a fixed body) and /health/ready (each dependency)."""

from __future__ import annotations

from typing import Any

import redis
from apiflask import APIBlueprint
from flask import Response, jsonify

from email_service.api.context import runtime
from email_service.api.problems import problem
from email_service.store import migrate

bp = APIBlueprint("health", __name__, tag="Health")
READY_RESPONSES: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    200: {
        "description": "Ready: every dependency answers",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    503: {"description": "Not ready: the body's ``checks`` say which dependency is down"},
}
# A readiness probe must answer well inside the orchestrator's 10 s timeout.
REDIS_TIMEOUT_S = 2


@bp.get("/health")
@bp.doc(security=[])
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "healthy", "service": "email_service"}


@bp.get("/health/ready")
@bp.doc(security=[], responses=READY_RESPONSES)
def ready() -> Response:
    """Readiness: the database (at the current schema) and Redis, when configured, answer."""
    checks: dict[str, str] = {"database": _database()}
    url = runtime().settings.redis_url
    if url:
        checks["redis"] = _redis(url)
    down = sorted(name for name, state in checks.items() if state != "ok")
    if down:
        return problem(
            503, f"not ready: {', '.join(down)} unavailable", "not_ready", extra={"checks": checks}
        )
    return jsonify({"status": "ready", "service": "email_service", "checks": checks})


def _database() -> str:
    try:
        current = migrate.is_current(runtime().db.engine)
    except Exception as exc:  # noqa: BLE001 - any driver error means "down"
        return f"down: {type(exc).__name__}"
    return (
        "ok" if current else "down: schema not at the latest migration; run `email-service migrate`"
    )


def _redis(url: str) -> str:
    client: Any = redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"down: {type(exc).__name__}"
    finally:
        client.close()
    return "ok"
