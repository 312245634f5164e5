"""The Redis clients of ragcord/redisconn.py against a Redis that is SIGKILLed and restarted, and the broker
choice and redelivery of workers/broker.py."""

from __future__ import annotations

import time

import pytest
import redis

from ragcord.errors import RagcordError
from ragcord.redisconn import async_redis_client, backoff_schedule, redis_client
from tests.e2e.procs import RedisServer
from tests.harness import free_port
from workers.actors import declare_actors
from workers.broker import build_broker


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()


def test_the_backoff_adds_up_to_the_budget():
    assert backoff_schedule(0) == []
    assert backoff_schedule(1.0) == [0.1, 0.2, 0.4, 0.8]
    waits = backoff_schedule(30)
    assert sum(waits) >= 30 and max(waits) == 1.0


async def test_clients_fail_fast_while_redis_is_down_and_reconnect_on_the_first_command_after(own_redis):
    sync = redis_client(own_redis.url)
    aio = async_redis_client(own_redis.url, socket_timeout=35)
    try:
        sync.set("kept", "yes")
        assert await aio.get("kept") == b"yes"
        assert await aio.xread({"stream": "0-0"}, block=50) == []  # a pooled connection, as WatchJob leaves

        own_redis.kill()
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            sync.get("kept")
        assert time.monotonic() - started < 5  # it fails, never hangs
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            await aio.get("kept")
        assert time.monotonic() - started < 5

        own_redis.start()
        # The very first command of each client works: dead pooled connections are replaced, not reported.
        assert await aio.xread({"stream": "0-0"}, block=50) == []
        assert sync.get("kept") == b"yes"  # the AOF kept it
        own_redis.kill()
        own_redis.start()
        assert await aio.get("kept") == b"yes"
        assert sync.get("kept") == b"yes"
    finally:
        sync.close()
        await aio.aclose()


def test_a_patient_client_waits_a_restart_out(own_redis):
    import threading

    patient = redis_client(own_redis.url, retry_seconds=30)
    patient.set("kept", "yes")
    own_redis.kill()
    restart = threading.Timer(1.5, own_redis.start)
    restart.start()
    try:
        assert patient.get("kept") == b"yes"  # issued while Redis was down, answered once it was back
    finally:
        restart.join()
        patient.close()


def test_a_dead_workers_messages_come_back_after_its_heartbeat_timeout_on_the_clock(make_settings):
    """Dramatiq puts a dead worker's unacknowledged messages back only during its 'maintenance', which it
    runs on a random draw; ragcord's broker also runs it on each queue every broker_maintenance_seconds."""
    settings = make_settings(
        worker_heartbeat_timeout_ms=1000, broker_maintenance_chance=1, broker_maintenance_seconds=0.5
    )
    dead, alive = build_broker(settings), build_broker(settings)
    try:
        actors = declare_actors(dead, settings)
        declare_actors(alive, settings)
        queue = actors.crawl_page.queue_name
        started = time.monotonic()  # before the dead worker's last heartbeat (each of its commands is one)
        dead.enqueue(actors.crawl_page.message("j", "u", 0))
        consumer = dead.consume(queue, prefetch=1, timeout=100)
        taken = None
        while taken is None:
            taken = next(consumer)  # taken and never acknowledged: then the worker "dies"

        survivor = alive.consume(queue, prefetch=1, timeout=100)
        message = None
        while message is None and time.monotonic() - started < 60:
            message = next(survivor)
        assert message is not None and list(message.args) == ["j", "u", 0]
        assert time.monotonic() - started >= 0.99  # not before the dead worker's heartbeat timed out
        survivor.ack(message)
    finally:
        dead.close()
        alive.close()


def test_an_amqp_broker_url_selects_rabbitmq_with_queues_under_the_key_prefix(make_settings):
    pytest.importorskip("pika")
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    settings = make_settings(broker_url="amqp://guest:guest@127.0.0.1:5672/", key_prefix="tenant-a")
    broker = build_broker(settings)  # connects lazily: nothing is sent yet
    actors = declare_actors(broker, settings)
    assert isinstance(broker, RabbitmqBroker)
    assert actors.crawl_page.queue_name == "tenant-a.crawl"
    assert broker.get_declared_queues() == {"tenant-a.crawl"}


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"broker_url": "kafka://127.0.0.1:9092"}, "names no broker"),
        ({"broker_url": "amqp://127.0.0.1/", "key_prefix": "bad prefix"}, "cannot prefix RabbitMQ queue"),
    ],
)
def test_a_broker_ragcord_cannot_use_is_refused_saying_what_to_set(make_settings, overrides, says):
    # (Settings read from the environment refuse a kafka:// URL already, naming RAGCORD_BROKER_URL:
    # tests/unit/test_cli.py. Settings made in code skip that check; the broker refuses them too.)
    with pytest.raises(RagcordError, match=says):
        build_broker(make_settings().model_copy(update=overrides))
