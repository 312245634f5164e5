"""Which knowledge base a Discord server (or one of its channels) asks, and which server owns one.

A knowledge base first crawled from a Discord server belongs to that server: no other server can bind it,
crawl into it or read it, so one server's documents never reach another's answers. Knowledge bases built
through the admin API belong to no server and are shared: any server may bind and read them; the first
server to /crawl into one takes it over. Deleting a knowledge base (admin API) frees its name.

Keys (P = key prefix): P:kb-binding:G  hash: "guild" or a channel id -> knowledge base name;
P:kb-owner  hash: knowledge base name -> owning guild id.
"""

from __future__ import annotations

import redis

from ragcord.errors import PermissionDenied
from ragcord.urls import validate_kb_name


class KnowledgeBaseOwners:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.key = f"{prefix}:kb-owner"

    def owner(self, knowledge_base: str) -> str | None:
        value = self.redis.hget(self.key, knowledge_base)
        return value.decode() if value else None

    def all(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(self.key).items()}

    def check(self, knowledge_base: str, guild_id: int | str) -> None:
        """PermissionDenied unless the server may use the knowledge base (it owns it, or no one does)."""
        owner = self.owner(knowledge_base)
        if owner is not None and owner != str(guild_id):
            raise PermissionDenied(
                f"knowledge base `{knowledge_base}` belongs to another Discord server; "
                "choose another name with /kb bind"
            )

    def claim(self, knowledge_base: str, guild_id: int | str) -> None:
        """Make the server the owner, unless another server already is (then PermissionDenied)."""
        validate_kb_name(knowledge_base)
        if not self.redis.hsetnx(self.key, knowledge_base, str(guild_id)):
            self.check(knowledge_base, guild_id)

    def release(self, knowledge_base: str) -> bool:
        return bool(self.redis.hdel(self.key, knowledge_base))


class KnowledgeBaseBindings:
    def __init__(self, client: redis.Redis, *, prefix: str, default: str) -> None:
        self.redis = client
        self.prefix = prefix
        self.default = default
        self.owners = KnowledgeBaseOwners(client, prefix=prefix)

    def _key(self, guild_id: int | str) -> str:
        return f"{self.prefix}:kb-binding:{guild_id}"

    def bind(self, guild_id: int | str, knowledge_base: str, *, channel_id: int | str | None = None) -> None:
        """PermissionDenied when another server owns the knowledge base."""
        self.owners.check(validate_kb_name(knowledge_base), guild_id)
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

    def usable(self, guild_id: int | str, *channel_ids: int | str | None) -> str:
        """What `resolve` names, after checking that this server may read it (PermissionDenied if not)."""
        knowledge_base = self.resolve(guild_id, *channel_ids)
        self.owners.check(knowledge_base, guild_id)
        return knowledge_base
