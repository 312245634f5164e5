"""The Discord threads the bot opened, and the conversation each one continues (kept in Redis, so the
bot still answers in them after a restart). A thread nobody used for `keep_seconds` (by default as long as a
conversation's memory lives) is forgotten, so the hash holds the threads in use, not every thread ever opened.

Keys (P = key prefix): P:owned-threads  hash: thread id -> conversation id;
P:owned-threads:used  sorted set: thread id -> its last use (epoch seconds).
"""

from __future__ import annotations

import time

import redis

from ragcord.lua import script_source

DEFAULT_KEEP_SECONDS = 30 * 86400.0  # Settings.memory_ttl_days' default


class OwnedThreads:
    def __init__(
        self, client: redis.Redis, *, prefix: str, keep_seconds: float = DEFAULT_KEEP_SECONDS
    ) -> None:
        if keep_seconds <= 0:
            raise ValueError("keep_seconds must be positive")
        self.redis = client
        self.key = f"{prefix}:owned-threads"
        self.used_key = f"{prefix}:owned-threads:used"
        self.keep_seconds = keep_seconds
        self._own = client.register_script(script_source("ragcord.lua", "threads/own.lua"))
        self._use = client.register_script(script_source("ragcord.lua", "threads/use.lua"))

    def add(self, thread_id: int | str, conversation_id: str, *, now: float | None = None) -> None:
        """Own the thread (and forget threads unused for longer than `keep_seconds`)."""
        self._own(
            keys=[self.key, self.used_key],
            args=[time.time() if now is None else now, self.keep_seconds, str(thread_id), conversation_id],
        )

    def conversation_of(self, thread_id: int | str, *, now: float | None = None) -> str | None:
        """The thread's conversation when the bot owns it (the use keeps it owned); else None."""
        when = time.time() if now is None else now
        value = self._use(keys=[self.key, self.used_key], args=[when, str(thread_id)])
        if not value:
            return None
        # (ragcord's clients never set decode_responses, but redis-py types the reply as either.)
        return value.decode() if isinstance(value, bytes) else str(value)

    def remove(self, thread_id: int | str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.key, str(thread_id))
        pipe.zrem(self.used_key, str(thread_id))
        pipe.execute()
