"""GET /metrics (Prometheus text format) and the per-request recording.

Only the operator reads metrics: with ``METRICS_TOKEN`` set, a scrape needs
``Authorization: Bearer <METRICS_TOKEN>`` (401 otherwise); unset, /metrics answers 404 in
production and is open in development. Label values never name a tenant or an account:
sync lag is a histogram over all active accounts.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import redis
from apiflask import APIBlueprint
from flask import Request, Response, request
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from email_service.api.http.context import runtime
from email_service.errors import AuthError, NotFoundError
from email_service.observability import metrics
from email_service.services import monitoring

bp = APIBlueprint("metrics", __name__, tag="Health")
log = logging.getLogger(__name__)
# Celery's default queue on the Redis broker is a list under this key.
CELERY_QUEUE = "celery"
# A scrape must answer well inside Prometheus' default 10 s scrape timeout.
REDIS_TIMEOUT_S = 2
# Sync lag buckets (seconds): a minute to a week; beat syncs hourly by default.
LAG_BOUNDS = (60.0, 300.0, 900.0, 3600.0, 7200.0, 21600.0, 86400.0, 604800.0)
# The OpenAPI description of the answer: Prometheus text, not JSON.
TEXT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    401: {"description": "METRICS_TOKEN is set and the bearer token is not it"},
    404: {"description": "production without METRICS_TOKEN: metrics are off"},
}


@bp.get("/metrics")
@bp.doc(
    security=[], summary="Prometheus metrics", responses=TEXT_RESPONSE, operation_id="get_metrics"
)
def scrape() -> Response:
    """Every API process's metrics, sync lag over all accounts and the queue depth."""
    _authorize()
    body, content_type = metrics.render([*_sync_lag(), *_queue_depth()])
    return Response(body, content_type=content_type)


def _authorize() -> None:
    settings = runtime().settings
    expected = settings.metrics_token
    if not expected:
        if settings.flask_env == "production":
            raise NotFoundError("metrics are off: set METRICS_TOKEN to scrape them")
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise AuthError("metrics need Authorization: Bearer <METRICS_TOKEN>")


def record(req: Request, status: int, seconds: float) -> None:
    """after_request: count the request under its route template; note the pool's size."""
    rule = req.url_rule
    metrics.observe_request(rule.rule if rule else None, req.method, status, seconds)
    metrics.set_pool(*monitoring.pool_counts(runtime().db))


def _sync_lag() -> list[Metric]:
    try:
        found = monitoring.sync_lag_histogram(runtime().db, LAG_BOUNDS)
    except Exception as exc:  # noqa: BLE001 - a scrape still shows the process metrics
        log.warning("sync lag unavailable: %s", type(exc).__name__)
        return []
    lag = HistogramMetricFamily(
        "sync_lag_seconds",
        "Active accounts by seconds since their last successful sync (since added, if never)",
    )
    buckets = [(f"{b:g}", float(n)) for b, n in zip(found.bounds, found.counts, strict=True)]
    lag.add_metric([], [*buckets, ("+Inf", float(found.total))], sum_value=None)
    worst = GaugeMetricFamily("sync_lag_max_seconds", "The largest sync lag of any account")
    worst.add_metric([], found.worst)
    return [lag, worst]


def _queue_depth() -> list[Metric]:
    url = runtime().settings.broker_url
    if not url or not url.startswith(("redis://", "rediss://", "unix://")):
        return []
    client: Any = redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )
    try:
        depth = int(client.llen(CELERY_QUEUE))
    except redis.RedisError:
        log.warning("queue depth unavailable: broker unreachable")
        return []
    finally:
        client.close()
    family = GaugeMetricFamily(
        "celery_queue_depth", "Tasks waiting in the broker queue", labels=["queue"]
    )
    family.add_metric([CELERY_QUEUE], depth)
    return [family]
