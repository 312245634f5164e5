"""The Dramatiq broker, built from settings (never at import time): Redis by default, RabbitMQ when
`RAGCORD_BROKER_URL` is an amqp:// URL. Jobs, events and everything else stay in Redis either way.

How a killed worker's messages come back:
- Redis: a worker's unacknowledged messages sit in its own ack set until the broker's maintenance (run by
  some other worker's command) finds its heartbeat older than `worker_heartbeat_timeout_ms` and puts them
  back. Dramatiq runs maintenance on a random `broker_maintenance_chance` in a million commands, which at
  the defaults is a wait of ~80 s on average after the timeout, with a long tail; `_RedisBroker` also runs
  it on each queue at least every `broker_maintenance_seconds`, so the wait is bounded.
- RabbitMQ: the server requeues a consumer's unacknowledged messages as soon as its connection closes
  (at once when the process dies; after missed heartbeats when its host vanishes).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.middleware import CurrentMessage

from ragcord.errors import RagcordError
from ragcord.redisconn import redis_client
from ragcord.settings import Settings

__all__ = ["build_broker", "queue_namespace"]

_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")


class _RedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose maintenance also runs on a clock, not only on a random draw."""

    def __init__(self, *, maintenance_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.maintenance_seconds = maintenance_seconds
        self._last_maintenance: dict[str, float] = {}
        self._maintenance_lock = threading.Lock()

    def _maintenance_due(self, command: str, queue_name: str) -> bool:
        if command != "fetch":  # what every consumer sends, busy or idle; acks may not run it
            return False
        now = time.monotonic()
        with self._maintenance_lock:
            last = self._last_maintenance.setdefault(queue_name, now)
            if now - last < self.maintenance_seconds:
                return False
            self._last_maintenance[queue_name] = now
            return True

    # Dramatiq 2.2's RedisBroker._dispatch, with the maintenance flag also set when it is due by the clock.
    def _dispatch(self, command: str) -> Callable[..., Any]:
        dispatch = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            maintenance = self._should_do_maintenance(command) or self._maintenance_due(command, queue_name)
            arguments = [
                command,
                current_millis(),
                queue_name,
                self.broker_id,
                self.heartbeat_timeout,
                self.dead_message_ttl,
                int(maintenance),
                self._max_unpack_size(),  # type: ignore[no-untyped-call]
                *args,
            ]
            return dispatch(args=arguments, keys=keys)

        return do_dispatch


class _QueueNamespace(dramatiq.Middleware):
    """Prefix every actor's queue (RabbitMQ has no key namespace): `crawl` becomes `<prefix>.crawl`, so
    deployments and tests sharing one RabbitMQ vhost never take each other's messages."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def before_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        if not actor.queue_name.startswith(f"{self.prefix}."):
            actor.queue_name = f"{self.prefix}.{actor.queue_name}"


def queue_namespace(settings: Settings) -> str:
    """The prefix of ragcord's queue names on RabbitMQ (its key prefix)."""
    if not _QUEUE_NAME.fullmatch(settings.key_prefix):
        raise RagcordError(
            f"RAGCORD_KEY_PREFIX {settings.key_prefix!r} cannot prefix RabbitMQ queue names: use letters, "
            "digits, '.', '_' and '-', starting with a letter or '_'"
        )
    return settings.key_prefix


def build_broker(settings: Settings) -> dramatiq.Broker:
    """The broker `settings.broker_url` names (RabbitMQ), else Dramatiq's Redis broker on `redis_url`."""
    broker: dramatiq.Broker
    url = settings.broker_url
    scheme = urlsplit(url).scheme if url else "redis"
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker  # loads pika: only when asked for

        broker = RabbitmqBroker(url=url, confirm_delivery=True)
        broker.add_middleware(_QueueNamespace(queue_namespace(settings)))
    elif scheme in ("redis", "rediss", "unix"):
        broker = _RedisBroker(
            # A worker's commands wait out a Redis restart: a failed ack or retry would lose the message.
            client=redis_client(url or settings.redis_url, retry_seconds=settings.worker_redis_retry_seconds),
            namespace=f"{settings.key_prefix}-dramatiq",
            heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
            maintenance_chance=settings.broker_maintenance_chance,
            maintenance_seconds=settings.broker_maintenance_seconds,
        )
    else:
        raise RagcordError(
            f"RAGCORD_BROKER_URL {url!r} names no broker ragcord knows: use amqp://user:password@host:5672/ "
            "for RabbitMQ, or leave it unset for Redis (RAGCORD_REDIS_URL)"
        )
    broker.add_middleware(CurrentMessage())
    return broker
