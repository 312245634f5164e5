"""What a knowledge base remembers besides its pages: its description, its answer instructions, its sources
(every crawl's seed and scope, with the last crawl of each) and which crawls into it may still run.

Keys (P = key prefix, KB = knowledge base name; the braces make KB the hash tag, so a knowledge base's keys
share one Redis Cluster slot):
  P:kb:{KB}          hash: description, answer_instructions, created_at, updated_at (absent: never created
                     with CreateKnowledgeBase; a crawl alone does not write it)
  P:kb:{KB}:sources  hash: seed URL -> JSON of the source (scope, limits, render mode, last job id)
  P:kb-records       set: the names of the knowledge bases with a record (for ListKnowledgeBases)
  P:kb:{KB}:crawls   hash: job id -> when it was claimed: the crawls into KB that may still run. An id
                     leaves when a later claim finds its job ended (`kbs/claim_crawls.lua`), so nothing has to
                     remember to release it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis

from ragcord.errors import Aborted, InvalidArgument, NotFound
from ragcord.jobs import JobStore
from ragcord.lua import script_source
from ragcord.redisconn import reply_text
from ragcord.urls import validate_kb_name

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_INSTRUCTIONS",
    "KnowledgeBaseRecord",
    "KnowledgeBaseRecords",
    "SourceRecord",
]

MAX_DESCRIPTION = 2000
MAX_INSTRUCTIONS = 2000
# A claimed id whose job record does not exist yet is a crawl being created; after this long it is a crawl
# whose creation died half-way (or whose record expired), and no longer holds the knowledge base.
_UNBORN_SECONDS = 60.0


@dataclass(frozen=True)
class KnowledgeBaseRecord:
    name: str
    description: str = ""
    answer_instructions: str = ""
    created_at: float | None = None
    updated_at: float | None = None


@dataclass(frozen=True)
class SourceRecord:
    """One seed the knowledge base was crawled from, with everything that shapes its crawl."""

    url: str
    include_patterns: list[str] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)
    max_pages: int = 0
    max_depth: int = 0
    max_concurrent_requests: int = 0
    render: str = "auto"
    # Any other option that shaped the crawl (a CrawlSpec field added later), as validate_crawl takes it.
    options: dict[str, Any] = field(default_factory=dict)
    last_job_id: str = ""
    added_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def from_json(cls, raw: bytes | str) -> SourceRecord:
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def check_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidArgument(
            f"description is {len(description)} characters; keep it to {MAX_DESCRIPTION} at most"
        )
    return description


def check_instructions(instructions: str) -> str:
    if len(instructions) > MAX_INSTRUCTIONS:
        raise InvalidArgument(
            f"answer_instructions is {len(instructions)} characters; keep it to {MAX_INSTRUCTIONS} at most"
        )
    if "\x00" in instructions:
        raise InvalidArgument("answer_instructions must not contain NUL characters")
    return instructions


class KnowledgeBaseRecords:
    """Records, sources and the crawl claim of knowledge bases, over a synchronous Redis client."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self.names_key = f"{prefix}:kb-records"
        self._claim = client.register_script(script_source("ragcord.lua", "kbs/claim_crawls.lua"))

    # -- keys -------------------------------------------------------------------------------------------
    def record_key(self, kb: str) -> str:
        return f"{self.prefix}:kb:{{{validate_kb_name(kb)}}}"

    def sources_key(self, kb: str) -> str:
        return f"{self.record_key(kb)}:sources"

    def crawls_key(self, kb: str) -> str:
        return f"{self.record_key(kb)}:crawls"

    # -- the record -------------------------------------------------------------------------------------
    def get(self, kb: str) -> KnowledgeBaseRecord | None:
        raw = {reply_text(k): reply_text(v) for k, v in self.redis.hgetall(self.record_key(kb)).items()}
        if not raw:
            return None
        return KnowledgeBaseRecord(
            name=kb,
            description=raw.get("description", ""),
            answer_instructions=raw.get("answer_instructions", ""),
            created_at=float(raw["created_at"]) if raw.get("created_at") else None,
            updated_at=float(raw["updated_at"]) if raw.get("updated_at") else None,
        )

    def exists(self, kb: str) -> bool:
        return bool(self.redis.exists(self.record_key(kb), self.sources_key(kb)))

    def create(self, kb: str, *, description: str, answer_instructions: str) -> bool:
        """Writes the record unless one exists (HSETNX on created_at decides); False when it existed."""
        check_description(description)
        check_instructions(answer_instructions)
        key = self.record_key(kb)
        now = time.time()
        if not self.redis.hsetnx(key, "created_at", now):
            return False
        self.redis.sadd(self.names_key, kb)
        self.redis.hset(
            key,
            mapping={
                "description": description,
                "answer_instructions": answer_instructions,
                "updated_at": now,
            },
        )
        return True

    def update(
        self, kb: str, *, description: str | None = None, answer_instructions: str | None = None
    ) -> KnowledgeBaseRecord:
        """Changes the fields given (None: kept); writes a record for a knowledge base only crawled so far."""
        fields: dict[str, str | float] = {"updated_at": time.time()}
        if description is not None:
            fields["description"] = check_description(description)
        if answer_instructions is not None:
            fields["answer_instructions"] = check_instructions(answer_instructions)
        key = self.record_key(kb)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "created_at", fields["updated_at"])
            for name, value in fields.items():
                pipe.hset(key, name, value)
            pipe.execute()
        self.redis.sadd(self.names_key, kb)
        record = self.get(kb)
        assert record is not None
        return record

    def instructions(self, kb: str) -> str:
        raw = self.redis.hget(self.record_key(kb), "answer_instructions")
        return reply_text(raw) if raw else ""

    def delete(self, kb: str) -> bool:
        """Forgets the record, the sources and the claim; True when there was something."""
        self.redis.srem(self.names_key, kb)
        return bool(self.redis.delete(self.record_key(kb), self.sources_key(kb), self.crawls_key(kb)))

    def names(self) -> list[str]:
        """The knowledge bases with a record."""
        return sorted(reply_text(n) for n in self.redis.smembers(self.names_key))

    # -- sources ----------------------------------------------------------------------------------------
    def sources(self, kb: str) -> list[SourceRecord]:
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.sources_key(kb)))
        return sorted((SourceRecord.from_json(v) for v in raw.values()), key=lambda s: (s.added_at, s.url))

    def remember_source(self, kb: str, source: SourceRecord) -> SourceRecord:
        """Adds the source or updates the one with its seed URL (keeping when it was first added)."""
        key = self.sources_key(kb)
        old = self.redis.hget(key, source.url)
        now = time.time()
        added = SourceRecord.from_json(old).added_at if old else now
        kept = SourceRecord(**{**asdict(source), "added_at": added or now, "updated_at": now})
        self.redis.hset(key, source.url, kept.to_json())
        return kept

    # -- which crawls may run -----------------------------------------------------------------------------
    def claim_crawls(self, kb: str, job_ids: Sequence[str], jobs: JobStore) -> None:
        """Claims the knowledge base for the new jobs `job_ids`, atomically: Aborted, naming the running
        job, while a crawl into it has not ended."""
        key = self.crawls_key(kb)
        stale: list[str] = []
        for _ in range(8):  # each round removes ended jobs; a live one ends the loop with Aborted
            held = self._claim(keys=[key], args=[time.time(), len(stale), *stale, *job_ids])
            if not held:
                return
            pairs = [(reply_text(held[i]), float(held[i + 1])) for i in range(0, len(held), 2)]
            stale = []
            for job_id, claimed_at in pairs:
                try:
                    job = jobs.get(job_id)
                except NotFound:
                    if time.time() - claimed_at < _UNBORN_SECONDS:
                        raise Aborted(
                            f"a crawl into knowledge base {kb!r} is starting (job {job_id}); wait for it to "
                            "end or cancel it with CancelJob"
                        ) from None
                    stale.append(job_id)
                    continue
                if not job.state.terminal:
                    raise Aborted(
                        f"a crawl into knowledge base {kb!r} is {job.state.value} (job {job_id}); wait for "
                        "it to end or cancel it with CancelJob, then start again"
                    )
                stale.append(job_id)
        raise Aborted(f"crawls into knowledge base {kb!r} keep starting; try again")

    def release_crawls(self, kb: str, job_ids: Sequence[str]) -> None:
        """Gives up claims whose jobs were never created."""
        if job_ids:
            self.redis.hdel(self.crawls_key(kb), *job_ids)

    def running(self, kb: str) -> list[str]:
        """The claimed job ids (some may have ended: `claim_crawls` sorts them out)."""
        return sorted(reply_text(k) for k in self.redis.hkeys(self.crawls_key(kb)))
