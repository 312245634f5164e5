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
        self.redis = client
        self._hit = client.register_script(script_source("ragcord.lua", "ratelimit/hit.lua"))

    def hit(self, key: str) -> float | None:
        """Count one use; None when allowed, else the seconds to wait."""
        wait_ms = self._hit(
            keys=[f"{self.prefix}:ratelimit:{key}"],
            args=[int(time.time() * 1000), self.window_ms, self.limit, uuid.uuid4().hex],
        )
        return None if not wait_ms else int(wait_ms) / 1000

    def tell_once(self, key: str, wait_seconds: float) -> bool:
        """True the first time a refused user is to be told so in this wait, then False until it ends:
        a user who floods gets one polite reply, not one per message (which would spend the bot's own
        Discord rate limit, shared with every other user)."""
        told = self.redis.set(
            f"{self.prefix}:ratelimit-told:{key}", 1, nx=True, px=max(1, int(wait_seconds * 1000))
        )
        return bool(told)
