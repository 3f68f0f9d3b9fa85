"""GET /metrics (Prometheus text format, no auth) and the per-request recording."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from apiflask import APIBlueprint
from flask import Response, g, request
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from email_service.api.context import runtime
from email_service.observability import metrics
from email_service.services import monitoring

bp = APIBlueprint("metrics", __name__, tag="Health")
log = logging.getLogger(__name__)
# Celery's default queue on the Redis broker is a list under this key.
CELERY_QUEUE = "celery"
# A scrape must answer well inside Prometheus' default 10 s scrape timeout.
REDIS_TIMEOUT_S = 2
# The OpenAPI description of the answer: Prometheus text, not JSON.
TEXT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@bp.get("/metrics")
@bp.doc(
    security=[], summary="Prometheus metrics", responses=TEXT_RESPONSE, operation_id="get_metrics"
)
def scrape() -> Response:
    """Every API process's metrics, sync lag per account and the queue depth."""
    body, content_type = metrics.render([*_sync_lag(), *_queue_depth()])
    return Response(body, content_type=content_type)


def record(status: int) -> None:
    """after_request: count the request under its route template; note the pool's size."""
    started = g.get("started")
    seconds = time.perf_counter() - started if started else 0.0
    route = request.url_rule.rule if request.url_rule else None
    metrics.observe_request(route, request.method, status, seconds)
    metrics.set_pool(*monitoring.pool_counts(runtime().db))


def _sync_lag() -> list[Metric]:
    lag = GaugeMetricFamily(
        "sync_lag_seconds",
        "Seconds since the account's last successful sync (the most lagging accounts)",
        labels=["tenant_id", "account_id"],
    )
    worst = GaugeMetricFamily("sync_lag_max_seconds", "The largest sync lag of any account")
    try:
        lags = monitoring.sync_lags(runtime().db)
    except Exception as exc:  # noqa: BLE001 - a scrape still shows the process metrics
        log.warning("sync lag unavailable: %s", type(exc).__name__)
        return []
    for item in lags:
        lag.add_metric([item.tenant_id, str(item.account_id)], item.seconds)
    worst.add_metric([], max((item.seconds for item in lags), default=0.0))
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
