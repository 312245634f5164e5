"""The Dramatiq broker on Redis, built from settings (never at import time)."""

from __future__ import annotations

from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage

from ragcord.settings import Settings


def build_broker(settings: Settings) -> RedisBroker:
    broker = RedisBroker(
        url=settings.redis_url,
        namespace=f"{settings.key_prefix}-dramatiq",
        heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
        maintenance_chance=settings.broker_maintenance_chance,
    )
    broker.add_middleware(CurrentMessage())
    return broker
