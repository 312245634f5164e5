"""Knowledge bases as a whole: what the store holds, and deleting one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ragcord.bindings import KnowledgeBaseOwners
from ragcord.errors import AlreadyExists, FailedPrecondition, NotFound
from ragcord.jobs import JobRecord, JobStore
from ragcord.knowledge.records import KnowledgeBaseRecord, KnowledgeBaseRecords, SourceRecord
from ragcord.knowledge.stores import Store
from ragcord.urls import validate_kb_name


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    name: str
    chunk_count: int
    servers: frozenset[str]  # the Discord servers that may use it; empty: shared
    record: KnowledgeBaseRecord | None = None  # description, instructions (None: never created by name)
    page_count: int = 0  # filled by get_knowledge_base only
    # Each source with its last job (None once that job expired); filled by get_knowledge_base only.
    sources: list[tuple[SourceRecord, JobRecord | None]] = field(default_factory=list)


def list_knowledge_bases(
    store: Store, owners: KnowledgeBaseOwners, records: KnowledgeBaseRecords | None = None
) -> list[KnowledgeBaseInfo]:
    names = store.knowledge_bases()
    if records is not None:
        names = sorted(set(names) | set(records.names()))
    servers = owners.servers_of(names)
    return [
        KnowledgeBaseInfo(
            name,
            store.count_chunks(name),
            frozenset(servers[name]),
            record=records.get(name) if records is not None else None,
        )
        for name in names
    ]


def create_knowledge_base(
    store: Store,
    records: KnowledgeBaseRecords,
    owners: KnowledgeBaseOwners,
    kb: str,
    *,
    description: str,
    answer_instructions: str,
) -> KnowledgeBaseInfo:
    """A new knowledge base's record; AlreadyExists when it has one, or pages, or sources."""
    validate_kb_name(kb)
    if records.get(kb) is not None or records.sources(kb) or store.count_chunks(kb):
        raise AlreadyExists(
            f"knowledge base {kb!r} exists already; UpdateKnowledgeBase changes its description and "
            "instructions"
        )
    if not records.create(kb, description=description, answer_instructions=answer_instructions):
        raise AlreadyExists(f"knowledge base {kb!r} was just created by another call")
    return get_knowledge_base(store, records, owners, None, kb)


def get_knowledge_base(
    store: Store,
    records: KnowledgeBaseRecords,
    owners: KnowledgeBaseOwners,
    jobs: JobStore | None,
    kb: str,
) -> KnowledgeBaseInfo:
    """Everything known of the knowledge base; NotFound when it has no record, page, source or crawl."""
    validate_kb_name(kb)
    record = records.get(kb)
    sources = records.sources(kb)
    chunks = store.count_chunks(kb)
    if record is None and not sources and not chunks and not (jobs is not None and jobs.active(kb)):
        raise NotFound(f"knowledge base {kb!r} does not exist; CreateKnowledgeBase or StartCrawl makes one")
    pages = len(store.list_sources(kb)) if chunks else 0
    with_jobs: list[tuple[SourceRecord, JobRecord | None]] = []
    for source in sources:
        job = None
        if jobs is not None and source.last_job_id:
            try:
                job = jobs.get(source.last_job_id)
            except NotFound:
                job = None
        with_jobs.append((source, job))
    return KnowledgeBaseInfo(
        kb, chunks, frozenset(owners.servers(kb)), record=record, page_count=pages, sources=with_jobs
    )


def set_knowledge_base_servers(
    store: Store, owners: KnowledgeBaseOwners, kb: str, guild_ids: list[str]
) -> KnowledgeBaseInfo:
    """Exactly these Discord servers may use the knowledge base (none: shared). It may not exist yet:
    reserving a name for a server before its first crawl is allowed."""
    servers = owners.set_servers(kb, guild_ids)
    return KnowledgeBaseInfo(kb, store.count_chunks(kb), frozenset(servers))


def delete_knowledge_base(
    store: Store,
    jobs: JobStore,
    owners: KnowledgeBaseOwners,
    kb: str,
    *,
    forget: Callable[[str], bool] | None = None,
) -> int:
    """Drop the knowledge base with every chunk and free its name; refused while a crawl could still
    write into it. `forget` drops what else is kept of it (record, sources, schedule; True when there was
    some). Returns the number of chunks deleted."""
    validate_kb_name(kb)
    if active := jobs.active(kb):
        job = active[0]
        raise FailedPrecondition(
            f"a crawl into knowledge base {kb!r} is {job.state.value} (job {job.id}): cancel it with "
            "CancelJob and delete once it has ended"
        )
    forgotten = forget(kb) if forget is not None else False
    try:
        deleted = store.drop_knowledge_base(kb)
    except NotFound:
        if owners.release(kb) or forgotten:  # claimed or created, never filled: the name is free again
            return 0
        raise
    owners.release(kb)
    return deleted
