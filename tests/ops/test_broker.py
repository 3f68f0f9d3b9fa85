"""The Redis transport of ``jobs/broker.py`` against a real Redis: a connection kombu has
already collected is reported as lost (a connection error Celery recovers from), not as
an ``AttributeError`` that made the worker exit. kombu's own transport is run through the
same steps to show the failure this guards against."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from email_service.jobs import broker, make_celery

pytestmark = pytest.mark.redis
URL = "redis://127.0.0.1:6379/7"  # this file's own database; only its own keys are removed


@pytest.fixture(params=[broker.Transport, kombu_redis.Transport], ids=["ours", "kombu's"])
def collected(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any, Any]]:
    """A channel holding one delivered, unacknowledged message, then left as a lost
    connection leaves it; the message; the transport's connection errors."""
    conn = Connection(URL, transport=request.param)
    name = f"broker-test-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), routing_key=name)
    channel = conn.default_channel
    with conn.Producer(channel) as producer:
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
    message = queue(channel).get(no_ack=False)
    assert message is not None
    transport = channel.connection
    errors = transport.connection_errors
    # The state Celery 5.7 leaves after a lost connection: the channel's pools dropped
    # (its first close got that far) and the transport collected by Connection.collect.
    channel._disconnect_pools()
    transport.client = None
    try:
        yield channel, message, errors
    finally:
        client = redis.Redis.from_url(URL)
        client.hdel("unacked", str(message.delivery_tag))
        client.zrem("unacked_index", str(message.delivery_tag))
        client.delete(name, f"_kombu.binding.{name}")
        client.close()


def test_a_collected_connection_is_a_lost_one(collected: tuple[Any, Any, Any]) -> None:
    channel, message, connection_errors = collected
    ours = isinstance(channel, broker.Channel)
    for step in (message.ack, channel.close):  # the running task's ack; Celery's close
        if ours:
            with pytest.raises(redis.exceptions.ConnectionError) as raised:
                step()
            assert isinstance(raised.value, connection_errors)  # kombu: recoverable
        else:
            with pytest.raises(AttributeError, match="hostname"):
                step()


def test_redis_urls_use_it_and_other_brokers_keep_kombus_transport(
    sqlite_settings: Any,
) -> None:
    assert broker.transport_for("redis://127.0.0.1:6379/0") == broker.TRANSPORT
    for url in (
        "rediss://127.0.0.1:6380/0",
        "sentinel://127.0.0.1:26379",
        "redis+socket:///run/redis.sock",
        "sqla+sqlite:////tmp/broker.db",
    ):
        assert broker.transport_for(url) is None, url
    app = make_celery(sqlite_settings(redis_url="redis://127.0.0.1:6379/7"))
    assert app.conf.broker_transport == broker.TRANSPORT
    assert make_celery(sqlite_settings()).conf.broker_transport is None


def test_a_channel_publishes_over_one_client_until_its_pool_is_replaced() -> None:
    conn = Connection(URL, transport=broker.Transport)
    name = f"broker-test-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name), routing_key=name)
    channel = conn.default_channel
    try:
        with conn.Producer(channel) as producer:
            for n in range(3):
                producer.publish(
                    {"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue]
                )
            first = channel._kept
            assert first is not None and first.connection_pool is channel.pool
            channel._disconnect_pools()  # as after a fork or a lost connection
            producer.publish({"n": 3}, exchange=queue.exchange, routing_key=name)
        assert channel._kept is not first and channel._kept.connection_pool is channel.pool
        got = [queue(channel).get(no_ack=True) for _ in range(4)]
        assert sorted(m.payload["n"] for m in got if m is not None) == [0, 1, 2, 3]
    finally:
        client = redis.Redis.from_url(URL)
        client.delete(name, f"_kombu.binding.{name}")
        client.close()
        conn.release()
