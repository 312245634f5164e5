"""Which knowledge base a Discord server (or one of its channels) asks, and which servers may use one.

A knowledge base first crawled from a Discord server belongs to that server: no other server can bind it,
crawl into it or read it, so one server's documents never reach another's answers. Knowledge bases built
through the admin API belong to no server and are shared: any server may bind and read them; the first
server to /crawl into one takes it over. The admin API can set the servers of a knowledge base (a team with
two Discord servers shares one that way); deleting a knowledge base frees its name.

Keys (P = key prefix): P:kb-binding:G  hash: "guild" or a channel id -> knowledge base name;
P:kb-servers:KB  set: the guild ids that may use the knowledge base (none: shared).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from ragcord.errors import InvalidArgument, PermissionDenied
from ragcord.lua import script_source
from ragcord.redisconn import reply_text
from ragcord.urls import validate_kb_name


class KnowledgeBaseOwners:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self._claim = client.register_script(script_source("ragcord.lua", "bindings/claim.lua"))

    def _key(self, knowledge_base: str) -> str:
        return f"{self.prefix}:kb-servers:{validate_kb_name(knowledge_base)}"

    def servers(self, knowledge_base: str) -> set[str]:
        """The Discord servers that may use the knowledge base; empty: any (shared)."""
        return {reply_text(member) for member in self.redis.smembers(self._key(knowledge_base))}

    def servers_of(self, knowledge_bases: Iterable[str]) -> dict[str, set[str]]:
        names = list(knowledge_bases)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.smembers(self._key(name))
        return {
            name: {reply_text(m) for m in members}
            for name, members in zip(names, pipe.execute(), strict=True)
        }

    def check(self, knowledge_base: str, guild_id: int | str) -> None:
        """PermissionDenied unless the server may use the knowledge base (it is one of its servers, or
        the knowledge base is shared)."""
        servers = self.servers(knowledge_base)
        if servers and str(guild_id) not in servers:
            raise _refused(knowledge_base)

    def claim(self, knowledge_base: str, guild_id: int | str) -> None:
        """Make a shared knowledge base the server's own; PermissionDenied when other servers have it."""
        if not self._claim(keys=[self._key(knowledge_base)], args=[str(guild_id)]):
            raise _refused(knowledge_base)

    def set_servers(self, knowledge_base: str, guild_ids: Iterable[int | str]) -> set[str]:
        """Exactly these servers may use the knowledge base from now on (none: shared)."""
        ids = {str(g).strip() for g in guild_ids}
        if not all(g.isdigit() for g in ids):
            raise InvalidArgument("discord_guild_ids must be Discord server ids (numbers)")
        key = self._key(knowledge_base)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        if ids:
            pipe.sadd(key, *ids)
        pipe.execute()
        return ids

    def release(self, knowledge_base: str) -> bool:
        return bool(self.redis.delete(self._key(knowledge_base)))


def _refused(knowledge_base: str) -> PermissionDenied:
    return PermissionDenied(
        f"knowledge base `{knowledge_base}` belongs to another Discord server; "
        "choose another name with /kb bind"
    )


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
        self.owners.check(knowledge_base, guild_id)  # (validates the name first)
        self.redis.hset(self._key(guild_id), str(channel_id) if channel_id else "guild", knowledge_base)

    def unbind(self, guild_id: int | str, *, channel_id: int | str | None = None) -> bool:
        return bool(self.redis.hdel(self._key(guild_id), str(channel_id) if channel_id else "guild"))

    def resolve(self, guild_id: int | str | None, *channel_ids: int | str | None) -> str:
        """The channel's binding (a thread passes its parent too), else the server's, else the default."""
        if guild_id is None:
            return self.default
        fields = [str(c) for c in channel_ids if c] + ["guild"]
        for value in self.redis.hmget(self._key(guild_id), fields):
            if value:
                return reply_text(value)
        return self.default

    def usable(self, guild_id: int | str, *channel_ids: int | str | None) -> str:
        """What `resolve` names, after checking that this server may read it (PermissionDenied if not)."""
        knowledge_base = self.resolve(guild_id, *channel_ids)
        self.owners.check(knowledge_base, guild_id)
        return knowledge_base
