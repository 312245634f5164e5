"""Which knowledge base a Discord server (or one of its channels) asks: bindings kept in Redis.

Keys (P = key prefix): P:kb-binding:G  hash: "guild" or a channel id -> knowledge base name.
"""

from __future__ import annotations

import redis

from ragcord.urls import validate_kb_name


class KnowledgeBaseBindings:
    def __init__(self, client: redis.Redis, *, prefix: str, default: str) -> None:
        self.redis = client
        self.prefix = prefix
        self.default = default

    def _key(self, guild_id: int | str) -> str:
        return f"{self.prefix}:kb-binding:{guild_id}"

    def bind(self, guild_id: int | str, knowledge_base: str, *, channel_id: int | str | None = None) -> None:
        self.redis.hset(
            self._key(guild_id), str(channel_id) if channel_id else "guild", validate_kb_name(knowledge_base)
        )

    def unbind(self, guild_id: int | str, *, channel_id: int | str | None = None) -> bool:
        return bool(self.redis.hdel(self._key(guild_id), str(channel_id) if channel_id else "guild"))

    def resolve(self, guild_id: int | str | None, *channel_ids: int | str | None) -> str:
        """The channel's binding (a thread passes its parent too), else the server's, else the default."""
        if guild_id is None:
            return self.default
        fields = [str(c) for c in channel_ids if c] + ["guild"]
        for value in self.redis.hmget(self._key(guild_id), fields):
            if value:
                return value.decode()
        return self.default
