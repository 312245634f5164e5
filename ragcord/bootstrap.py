"""The composition root shared by every process: builds the real dependencies from settings.

Tests pass their own (`bootstrap(settings, redis=..., store=...)`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import redis

from ragcord import blas, redisconn
from ragcord.aio import Executors
from ragcord.jobs import JobStore
from ragcord.knowledge.embedders import Embedder, build_embedder
from ragcord.knowledge.stores import Store, build_store
from ragcord.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    embedder: Embedder
    store: Store
    # Thread pools of the async adapters (created lazily: a worker process that never uses them starts none).
    executors: Executors = field(default_factory=lambda: Executors.create(io_threads=16, answer_threads=8))

    def close(self) -> None:
        self.executors.shutdown()
        self.store.close()
        self.redis.close()


def bootstrap(
    settings: Settings,
    *,
    redis_client: redis.Redis | None = None,
    embedder: Embedder | None = None,
    store: Store | None = None,
) -> Services:
    client = redis_client or redisconn.redis_client(
        settings.redis_url, retry_seconds=settings.redis_retry_seconds
    )
    jobs = JobStore(
        client,
        prefix=settings.key_prefix,
        retention=settings.event_retention,
        keep_seconds=settings.job_retention_seconds,
    )
    embedder = embedder or build_embedder(settings)
    store = store or build_store(settings, dim=embedder.dim)
    executors = Executors.create(io_threads=settings.io_threads, answer_threads=settings.answer_threads)
    blas.limit_threads(settings.blas_threads)
    # Once per process is the rule (one model in memory); the pid tells processes apart in a shared log.
    log.info(
        "services built: %s embedder, %s store (process %d)", settings.embedder, settings.store, os.getpid()
    )
    return Services(
        settings=settings, redis=client, jobs=jobs, embedder=embedder, store=store, executors=executors
    )
