"""Knowledge bases as a whole: what the store holds, and deleting one."""

from __future__ import annotations

from dataclasses import dataclass

from ragcord.errors import FailedPrecondition
from ragcord.jobs import JobStore
from ragcord.knowledge.stores import Store
from ragcord.urls import validate_kb_name


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    name: str
    chunk_count: int


def list_knowledge_bases(store: Store) -> list[KnowledgeBaseInfo]:
    return [KnowledgeBaseInfo(name, store.count_chunks(name)) for name in store.knowledge_bases()]


def delete_knowledge_base(store: Store, jobs: JobStore, kb: str) -> int:
    """Drop the knowledge base with every chunk; refused while a crawl could still write into it."""
    validate_kb_name(kb)
    if active := jobs.active(kb):
        job = active[0]
        raise FailedPrecondition(
            f"a crawl into knowledge base {kb!r} is {job.state.value} (job {job.id}): cancel it with "
            "CancelJob and delete once it has ended"
        )
    return store.drop_knowledge_base(kb)
