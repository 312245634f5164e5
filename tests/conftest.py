"""Shared fixtures: real Redis with a key prefix per test, settings that point at it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("RAGCORD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if CI:
            raise
        pytest.skip(f"Redis not available at {REDIS_URL}: {exc}")
    return REDIS_URL


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    for pattern in (f"{prefix}:*", f"{prefix}-dramatiq*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def key_prefix(redis_url: str):
    """A fresh key namespace; everything under it is deleted before and after the test."""
    prefix = f"test{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    _delete_prefix(client, prefix)
    yield prefix
    _delete_prefix(client, prefix)
    client.close()


@pytest.fixture
def redis_client(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str, tmp_path: Path):
    from ragcord.settings import Settings

    def make(**overrides):
        values = dict(
            redis_url=redis_url,
            key_prefix=key_prefix,
            data_dir=tmp_path / "data",
            allow_private_networks=True,
            embedder="none",
            fetch_timeout_seconds=2.0,
            page_retries=1,
            retry_backoff_ms=50,
            _env_file=None,
        )
        values.update(overrides)
        return Settings(**values)

    return make
