"""Knowledge bases as a whole: what the store holds, and deleting one."""

from __future__ import annotations

from dataclasses import dataclass

from ragcord.bindings import KnowledgeBaseOwners
from ragcord.errors import FailedPrecondition, NotFound
from ragcord.jobs import JobStore
from ragcord.knowledge.stores import Store
from ragcord.urls import validate_kb_name


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    name: str
    chunk_count: int
    servers: frozenset[str]  # the Discord servers that may use it; empty: shared


def list_knowledge_bases(store: Store, owners: KnowledgeBaseOwners) -> list[KnowledgeBaseInfo]:
    names = store.knowledge_bases()
    servers = owners.servers_of(names)
    return [KnowledgeBaseInfo(name, store.count_chunks(name), frozenset(servers[name])) for name in names]


def set_knowledge_base_servers(
    store: Store, owners: KnowledgeBaseOwners, kb: str, guild_ids: list[str]
) -> KnowledgeBaseInfo:
    """Exactly these Discord servers may use the knowledge base (none: shared). It may not exist yet:
    reserving a name for a server before its first crawl is allowed."""
    servers = owners.set_servers(kb, guild_ids)
    return KnowledgeBaseInfo(kb, store.count_chunks(kb), frozenset(servers))


def delete_knowledge_base(store: Store, jobs: JobStore, owners: KnowledgeBaseOwners, kb: str) -> int:
    """Drop the knowledge base with every chunk and free its name; refused while a crawl could still
    write into it. Returns the number of chunks deleted."""
    validate_kb_name(kb)
    if active := jobs.active(kb):
        job = active[0]
        raise FailedPrecondition(
            f"a crawl into knowledge base {kb!r} is {job.state.value} (job {job.id}): cancel it with "
            "CancelJob and delete once it has ended"
        )
    try:
        deleted = store.drop_knowledge_base(kb)
    except NotFound:
        if owners.release(kb):  # claimed by a server, never filled: the name is free again
            return 0
        raise
    owners.release(kb)
    return deleted
