"""The Discord threads the bot opened, and the conversation each one continues (kept in Redis, so the
bot still answers in them after a restart).

Keys (P = key prefix): P:owned-threads  hash: thread id -> conversation id.
"""

from __future__ import annotations

import redis


class OwnedThreads:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.key = f"{prefix}:owned-threads"

    def add(self, thread_id: int | str, conversation_id: str) -> None:
        self.redis.hset(self.key, str(thread_id), conversation_id)

    def conversation_of(self, thread_id: int | str) -> str | None:
        value = self.redis.hget(self.key, str(thread_id))
        if not value:
            return None
        # (ragcord's clients never set decode_responses, but redis-py types the reply as either.)
        return value.decode() if isinstance(value, bytes) else value

    def remove(self, thread_id: int | str) -> None:
        self.redis.hdel(self.key, str(thread_id))
