"""A per-user limit on questions: at most `limit` in any `window` seconds (sliding log in Redis)."""

from __future__ import annotations

import time
import uuid

import redis

from ragcord.lua import script_source


class RateLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str, limit: int, window_seconds: float) -> None:
        self.prefix = prefix
        self.limit = limit
        self.window_ms = int(window_seconds * 1000)
        self._hit = client.register_script(script_source("ragcord.lua", "ratelimit/hit.lua"))

    def hit(self, key: str) -> float | None:
        """Count one use; None when allowed, else the seconds to wait."""
        wait_ms = self._hit(
            keys=[f"{self.prefix}:ratelimit:{key}"],
            args=[int(time.time() * 1000), self.window_ms, self.limit, uuid.uuid4().hex],
        )
        return None if not wait_ms else int(wait_ms) / 1000
