"""kombu's Redis transport, with one fix: a worker survives its broker restarting.

When the broker connection breaks under a running acks_late task, Celery 5.7 first
collects the connection (kombu drops the transport's link to it) and then closes it. The
close reaches the channel, whose shutdown restores the unacknowledged message, which
needs the connection details that are already gone: ``AttributeError`` in
``_connparams``. That is not a connection error, so Celery treats it as unrecoverable
and the worker process exits.

The running task's acknowledgement, on the same channel, fails the same way. Here both
raise a Redis ``ConnectionError`` instead, which kombu and Celery treat as what it is:
the broker is unreachable. The connection still closes, the failed acknowledgement is logged,
and the consumer reconnects as for any lost connection. The unacknowledged message is
not lost: it stays in Redis's unacked set, and any worker restores it after the
visibility timeout (a re-run that the per-account lock and the outbox state machine make
harmless).

Every publish and acknowledgement also asked the channel for a new Redis client object on
the channel's pool (kombu's ``conn_or_acquire``): building one fills a table of ~250
response callbacks, a fifth of a task's publish. The channel here keeps one per pool
(clients are thread-safe, the connections come from the pool as before), and makes a new
one when kombu replaces the pool (after a fork or a lost connection).

Used for ``redis://`` brokers only: ``rediss://`` and Sentinel URLs need the transport's
name to set up TLS or discovery, so they keep kombu's own class.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis

# Celery's ``broker_transport`` for a redis:// URL.
TRANSPORT = "email_service.jobs.broker:Transport"


class Channel(kombu_redis.Channel):
    """A channel that reports a collected connection as a lost one, and keeps its client."""

    _kept: redis.Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        """The channel's client on its current pool (the asynchronous one: kombu's own)."""
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc,no-any-return]  # not in the kombu stubs
        pool = self.pool
        kept = self._kept
        if kept is None or kept.connection_pool is not pool:
            kept = self._kept = super()._create_client(asynchronous=False)  # type: ignore[misc]
        return kept

    def _connparams(self, asynchronous: bool = False) -> dict[str, object]:
        """Connection parameters; a Redis ``ConnectionError`` once the transport was
        collected (its client is gone) instead of kombu's ``AttributeError``."""
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError(
                "the broker connection was lost (unacknowledged messages are restored "
                "after the visibility timeout)"
            )
        params: dict[str, object] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # not in the kombu stubs
        return params


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """The ``broker_transport`` to configure for this broker URL (None: kombu's choice)."""
    return TRANSPORT if urlsplit(broker_url).scheme == "redis" else None
