"""Prometheus metrics (docs/operations.md), and the scrape that renders them.

Every process records into the module-level metrics below. Under ``email-service serve``
and ``email-service worker`` (with ``CELERY_METRICS_PORT``) the processes of one server
share a multiprocess directory (see ``metrics_files``) and a scrape adds them all up;
elsewhere (tests, the CLI) a scrape shows this process alone. Values that live in the
database or Redis (sync lag, queue depth) are read at scrape time by collectors the
caller passes to :func:`render`.
"""

from __future__ import annotations

import threading
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
# Webhook attempts by outcome: succeeded, retrying (failed, will retry), failed (gave up).
WEBHOOK_OUTCOMES = ("succeeded", "retrying", "failed")
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries_total", "Webhook delivery attempts, by outcome", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "webhook_delivery_seconds", "Time a webhook receiver took to answer", buckets=REQUEST_BUCKETS
)
# From a commit to its announcement: seconds on a live feed, hours when retries were needed.
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)
CHANGE_LAG = Histogram(
    "change_log_lag_seconds",
    "Seconds from a change's commit to its delivery, by channel (events, webhooks)",
    ["channel"],
    buckets=LAG_BUCKETS,
)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(_outcome)
# From a server's push to the end of the folder sync it queued: IDLE answers at once,
# the rest is the queue and the sync (target p95 <= 2 s, issue 19).
PUSH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)
PUSH_WATCHED = Gauge(
    "imap_push_watched_accounts",
    "Accounts whose lease this watcher holds",
    multiprocess_mode="livesum",
)
PUSH_IDLE = Gauge(
    "imap_push_idle_connections",
    "IMAP connections in IDLE (logged in, listening)",
    multiprocess_mode="livesum",
)
PUSH_RECONNECTS = Counter(
    "imap_push_reconnects_total", "Watch connections that dropped or failed and were retried"
)
PUSH_LATENCY = Histogram(
    "imap_push_sync_latency_seconds",
    "Seconds from a change reported over IDLE to the end of the folder sync it queued",
    buckets=PUSH_BUCKETS,
)
for _kind in EMAIL_KINDS:  # every kind shows from the start, at 0
    EMAILS.labels(_kind)


def count_emails(kind: str, n: int = 1) -> None:
    """Add ``n`` messages of ``kind`` (one of EMAIL_KINDS)."""
    if kind not in EMAIL_KINDS:
        raise ValueError(f"unknown email kind {kind!r}")
    if n > 0:
        EMAILS.labels(kind).inc(n)


# The children of REQUESTS and REQUEST_DURATION per label values, found once: ``labels()``
# checks and joins its values under a lock on every call. Bounded like the labels (route
# templates x METHODS x statuses).
_REQUEST_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_POOL_IN_USE = POOL.labels("in_use")
_POOL_IDLE = POOL.labels("idle")


# The pool gauges' values as this process last wrote them.
_POOL_LAST: dict[str, int] = {}
_POOL_LOCK = threading.Lock()


def observe_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """Record one HTTP request under its route template (never the raw path)."""
    key = (route or UNMATCHED_ROUTE, method if method in METHODS else "OTHER", status)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        labels = (key[0], key[1], str(status))
        children = (REQUESTS.labels(*labels), REQUEST_DURATION.labels(*labels))
        _REQUEST_CHILDREN[key] = children
    children[0].inc()
    children[1].observe(seconds)


def set_pool(in_use: int, idle: int) -> None:
    """This process's database pool: connections checked out and idle (each gauge written
    when its value changed: a write in multiprocess mode is a locked mmap update)."""
    if _POOL_LAST.get("in_use") == in_use and _POOL_LAST.get("idle") == idle:
        return
    with _POOL_LOCK:  # the last value written is the one remembered
        _POOL_IN_USE.set(in_use)
        _POOL_IDLE.set(idle)
        _POOL_LAST.update(in_use=in_use, idle=idle)


def count_cache_hit(n: int = 1) -> None:
    """Add ``n`` lookups answered from the Redis cache."""
    CACHE_HITS.inc(n)


def count_task(task: str, state: str) -> None:
    """One background task finished in ``state`` (success, failure, retry)."""
    TASKS.labels(task, state).inc()


def observe_webhook(outcome: str, seconds: float, lag: float | None) -> None:
    """One webhook attempt: its outcome, the receiver's time, and (delivered) its lag."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()
    WEBHOOK_LATENCY.observe(seconds)
    if lag is not None:
        CHANGE_LAG.labels("webhooks").observe(max(lag, 0.0))


def observe_change_lag(channel: str, seconds: float) -> None:
    """A change reached a client ``seconds`` after it was committed."""
    CHANGE_LAG.labels(channel).observe(max(seconds, 0.0))


def set_push(watched: int, idle: int) -> None:
    """This watcher's leased accounts and open IDLE connections."""
    PUSH_WATCHED.set(watched)
    PUSH_IDLE.set(idle)


def set_push_idle(idle: int) -> None:
    """This watcher's open IDLE connections (updated as they open and close)."""
    PUSH_IDLE.set(idle)


def count_push_reconnect() -> None:
    """One watch connection dropped (or failed to open) and will be retried."""
    PUSH_RECONNECTS.inc()


def observe_push_latency(seconds: float) -> None:
    """A pushed change reached the store ``seconds`` after the server reported it."""
    PUSH_LATENCY.observe(max(0.0, seconds))


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
