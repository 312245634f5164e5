"""A per-user limit on questions: at most `limit` in any `window` seconds (sliding log in Redis)."""

from __future__ import annotations

import time
import uuid

import redis

# KEYS: log. ARGV: now (ms), window (ms), limit, member. Returns 0 when allowed, else ms to wait.
_HIT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class RateLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str, limit: int, window_seconds: float) -> None:
        self.prefix = prefix
        self.limit = limit
        self.window_ms = int(window_seconds * 1000)
        self._hit = client.register_script(_HIT)

    def hit(self, key: str) -> float | None:
        """Count one use; None when allowed, else the seconds to wait."""
        wait_ms = self._hit(
            keys=[f"{self.prefix}:ratelimit:{key}"],
            args=[int(time.time() * 1000), self.window_ms, self.limit, uuid.uuid4().hex],
        )
        return None if not wait_ms else int(wait_ms) / 1000
