"""The composition root shared by every process: builds the real dependencies from settings.

Tests pass their own (`bootstrap(settings, redis=..., store=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from ragcord.jobs import JobStore
from ragcord.knowledge.embedders import Embedder, build_embedder
from ragcord.knowledge.stores import Store, build_store
from ragcord.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    embedder: Embedder
    store: Store

    def close(self) -> None:
        self.store.close()
        self.redis.close()


def bootstrap(
    settings: Settings,
    *,
    redis_client: redis.Redis | None = None,
    embedder: Embedder | None = None,
    store: Store | None = None,
) -> Services:
    client = redis_client or redis.Redis.from_url(
        settings.redis_url, socket_timeout=30, health_check_interval=30
    )
    jobs = JobStore(client, prefix=settings.key_prefix, retention=settings.event_retention)
    embedder = embedder or build_embedder(settings)
    store = store or build_store(settings, dim=embedder.dim)
    return Services(settings=settings, redis=client, jobs=jobs, embedder=embedder, store=store)
