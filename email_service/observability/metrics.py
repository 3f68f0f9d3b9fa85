"""Prometheus metrics (docs/operations.md), and the scrape that renders them.

Every process records into the module-level metrics below. Under ``email-service serve``
and ``email-service worker`` (with ``CELERY_METRICS_PORT``) the processes of one server
share a multiprocess directory (see ``metrics_files``) and a scrape adds them all up;
elsewhere (tests, the CLI) a scrape shows this process alone. Values that live in the
database or Redis (sync lag, queue depth) are read at scrape time by collectors the
caller passes to :func:`render`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.metrics_core import Metric

from email_service.observability import metrics_files

# What happens to a message: stored by a sync, parsed, sent, or failed (a parse error or
# a send that gave up); the public labels.
EMAIL_KINDS = ("synced", "parsed", "sent", "failed")
# From 5 ms (a keyset page) to 60 s (a slow credential check against a remote server).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Methods kept as label values; anything else is "OTHER" (a client cannot mint series).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
disable_created_metrics()  # type: ignore[no-untyped-call]  # multiprocess mode has no *_created
_collector: Any = multiprocess.MultiProcessCollector  # untyped in prometheus-client
UNMATCHED_ROUTE = "<unmatched>"  # 404s and 405s: never the raw path (unbounded labels)

REQUEST_DURATION = Histogram(
    "request_duration_seconds",
    "HTTP request latency by route template, method and status",
    ["route", "method", "status"],
    buckets=REQUEST_BUCKETS,
)
REQUESTS = Counter(
    "requests_total",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)
EMAILS = Counter(
    "emails_processed_total", "Messages processed, by kind (synced, parsed, sent, failed)", ["kind"]
)
POOL = Gauge(
    "database_connection_pool_size",
    "Open database connections of the API processes, by state (in_use, idle)",
    ["state"],
    multiprocess_mode="livesum",
)
CACHE_HITS = Counter("redis_cache_hits_total", "Lookups answered from the Redis cache")
TASKS = Counter(
    "celery_tasks_total", "Background tasks finished, by task and state", ["task", "state"]
)
for _kind in EMAIL_KINDS:  # every kind shows from the start, at 0
    EMAILS.labels(_kind)


def count_emails(kind: str, n: int = 1) -> None:
    """Add ``n`` messages of ``kind`` (one of EMAIL_KINDS)."""
    if kind not in EMAIL_KINDS:
        raise ValueError(f"unknown email kind {kind!r}")
    if n > 0:
        EMAILS.labels(kind).inc(n)


def observe_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """Record one HTTP request under its route template (never the raw path)."""
    labels = (route or UNMATCHED_ROUTE, method if method in METHODS else "OTHER", str(status))
    REQUESTS.labels(*labels).inc()
    REQUEST_DURATION.labels(*labels).observe(seconds)


def set_pool(in_use: int, idle: int) -> None:
    """This process's database pool: connections checked out and idle."""
    POOL.labels("in_use").set(in_use)
    POOL.labels("idle").set(idle)


def count_cache_hit(n: int = 1) -> None:
    """Add ``n`` lookups answered from the Redis cache."""
    CACHE_HITS.inc(n)


def count_task(task: str, state: str) -> None:
    """One background task finished in ``state`` (success, failure, retry)."""
    TASKS.labels(task, state).inc()


class Families:
    """A collector that yields metric families gathered beforehand."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        """The families, as given."""
        return iter(self.families)


class Recorded:
    """A collector of what this server's processes recorded (all of them, when sharing)."""

    def collect(self) -> Iterator[Metric]:
        """Every process's samples, merged, read under the directory's lock."""
        path = metrics_files.current()
        if path is None:
            return iter(REGISTRY.collect())
        collector = _collector(None, path=str(path))
        with metrics_files.locked(path, exclusive=False):
            return iter(list(collector.collect()))


def render(extra: Iterable[Metric] = ()) -> tuple[bytes, str]:
    """The exposition text of every process's metrics plus ``extra``; and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Recorded())
    registry.register(Families(extra))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve(host: str, port: int) -> None:
    """Serve :class:`Recorded` at http://host:port/metrics from a daemon thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Recorded())
    start_http_server(port, addr=host, registry=registry)
