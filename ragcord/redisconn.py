"""Every Redis client of ragcord is built here, sync and asyncio alike, so they all survive a Redis restart.

redis-py's `from_url` gives a client that never retries (its pool's connections get `Retry(NoBackoff(), 0)`):
after Redis restarts, the first command on each pooled connection fails with "Connection closed by
server". These clients instead
- check a connection that sat idle longer than `health_check_interval` with a PING before using it;
- retry a command that met a ConnectionError or TimeoutError on a fresh connection, with exponential
  backoff, for about `retry_seconds` in all: a request (an RPC, a bot command) fails fast with
  UNAVAILABLE while Redis is down, and a worker mid-page waits a restart out (it passes a longer budget);
- give up connecting after `connect_timeout` (a host that drops packets) and reading after `socket_timeout`.
"""

from __future__ import annotations

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

__all__ = ["async_redis_client", "backoff_schedule", "redis_client", "reply_text"]

# The first retry waits 0.1 s, then twice as long each time, never more than 1 s between tries.
_BASE_SECONDS = 0.05
_CAP_SECONDS = 1.0
_HEALTH_CHECK_SECONDS = 2
_CONNECT_TIMEOUT_SECONDS = 2.0
_RETRIED = (RedisConnectionError, RedisTimeoutError)


def backoff_schedule(retry_seconds: float) -> list[float]:
    """The waits between tries that add up to at least `retry_seconds` (none when it is 0)."""
    waits: list[float] = []
    backoff = ExponentialBackoff(cap=_CAP_SECONDS, base=_BASE_SECONDS)
    while sum(waits) < retry_seconds:
        waits.append(backoff.compute(len(waits) + 1))
    return waits


def redis_client(
    url: str,
    *,
    retry_seconds: float = 1.0,
    socket_timeout: float = 10.0,
    connect_timeout: float = _CONNECT_TIMEOUT_SECONDS,
) -> redis.Redis:
    """A synchronous client for `url` that reconnects by itself (module docstring)."""
    retry = Retry(
        ExponentialBackoff(cap=_CAP_SECONDS, base=_BASE_SECONDS),
        len(backoff_schedule(retry_seconds)),
        supported_errors=_RETRIED,
    )
    return redis.Redis.from_url(
        url,
        retry=retry,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=_HEALTH_CHECK_SECONDS,
    )


def async_redis_client(
    url: str,
    *,
    retry_seconds: float = 1.0,
    socket_timeout: float = 10.0,
    connect_timeout: float = _CONNECT_TIMEOUT_SECONDS,
) -> redis.asyncio.Redis:
    """An asyncio client for `url` that reconnects by itself. A client that blocks on reads (XREAD
    BLOCK) needs `socket_timeout` longer than its longest block."""
    retry = redis.asyncio.retry.Retry(
        ExponentialBackoff(cap=_CAP_SECONDS, base=_BASE_SECONDS),
        len(backoff_schedule(retry_seconds)),
        supported_errors=_RETRIED,
    )
    return redis.asyncio.Redis.from_url(
        url,
        retry=retry,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=_HEALTH_CHECK_SECONDS,
    )


def reply_text(value: bytes | str) -> str:
    """A Redis reply as text: ragcord's clients never set decode_responses, but redis-py types both."""
    return value.decode() if isinstance(value, bytes) else value
