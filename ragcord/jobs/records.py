"""What a crawl job is: its states, its record, its events and the cursor into its event log (no Redis)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ragcord.errors import InvalidArgument, NotFound, OutOfRange
from ragcord.redisconn import reply_text

__all__ = [
    "EventKind",
    "FinishResult",
    "JobEvent",
    "JobRecord",
    "JobState",
    "PageOutcome",
    "RenderMode",
    "SitemapMode",
    "StreamEntry",
    "check_retained",
    "new_job_id",
    "parse_cursor",
    "parse_event",
]


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class EventKind(StrEnum):
    SNAPSHOT = "SNAPSHOT"
    STATE_CHANGED = "STATE_CHANGED"
    PAGE_INDEXED = "PAGE_INDEXED"
    PAGE_SKIPPED = "PAGE_SKIPPED"
    PAGE_FAILED = "PAGE_FAILED"
    HEARTBEAT = "HEARTBEAT"
    # Incremental re-crawls (issue 22): a page the site had not changed, a page the site no longer has.
    PAGE_UNCHANGED = "PAGE_UNCHANGED"
    PAGE_REMOVED = "PAGE_REMOVED"


class PageOutcome(StrEnum):
    INDEXED = "indexed"  # (what a worker before incremental crawls reported for ADDED and UPDATED)
    SKIPPED = "skipped"
    FAILED = "failed"
    # Incremental crawls: each counts in pages_done too, and in its own counter (pages_added, ...).
    ADDED = "added"  # indexed, new to the knowledge base
    UPDATED = "updated"  # indexed again, its content changed
    UNCHANGED = "unchanged"  # 304, or the same content: no embedding, no store write
    REMOVED = "removed"  # 404/410: removed from the knowledge base


class SitemapMode(StrEnum):
    """What a crawl does with the site's sitemaps (robots.txt `Sitemap:` lines and /sitemap.xml)."""

    INCLUDE = "include"  # their in-scope URLs seed the crawl beside the links it follows
    ONLY = "only"  # only their URLs are crawled (and the seed): no link following
    SKIP = "skip"


class RenderMode(StrEnum):
    """When a crawl's pages are rendered in a headless browser (pages whose text JavaScript writes)."""

    AUTO = "auto"  # when the static HTML has no main content but loads scripts
    ALWAYS = "always"
    NEVER = "never"


# One event as XRANGE and XREAD return it: ragcord's Redis clients never set decode_responses.
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def _f(value: Any) -> float | None:
    return float(value) if value not in (None, "", b"") else None


@dataclass(frozen=True)
class JobRecord:
    id: str
    knowledge_base: str
    url: str
    state: JobState
    max_pages: int
    max_depth: int
    include_patterns: list[str] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)
    pages_discovered: int = 0
    pages_done: int = 0
    pages_failed: int = 0
    pages_skipped: int = 0
    chunks_indexed: int = 0
    # Distinct in-scope links refused because max_pages was reached: the site has at least this many more.
    pages_beyond_max_pages: int = 0
    outstanding: int = 0  # pages reserved and not finished yet (queued or in work)
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    last_progress_at: float | None = None
    error: str = ""
    cancel_requested: bool = False
    render: RenderMode = RenderMode.AUTO
    # The crawl's own limit of requests in flight to its site (StartCrawl's); 0: the workers' default.
    max_concurrent_requests: int = 0
    # Incremental crawls: every page processed counts in pages_done and in one of these.
    pages_unchanged: int = 0
    pages_updated: int = 0
    pages_added: int = 0
    pages_removed: int = 0
    full: bool = False  # StartCrawl's `full`: every page indexed again, validators and hashes ignored
    sitemap: SitemapMode = SitemapMode.INCLUDE
    # Not stored: what a job with no page done yet waits for, when known (JobStore.get fills it).
    waiting_for: str = ""

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[bytes | str, bytes | str]) -> JobRecord:
        """The job from its Redis hash (HGETALL's reply); NotFound when the hash is empty."""
        if not raw:
            raise NotFound(
                f"no job with id {job_id!r} (ended jobs are kept for RAGCORD_JOB_RETENTION_DAYS, then "
                "removed); ListJobs shows the existing ones"
            )
        return cls.from_fields({reply_text(k): v for k, v in raw.items()})

    @classmethod
    def from_fields(cls, raw: Mapping[str, Any]) -> JobRecord:
        """The job from its hash fields as str keys (a decoded hash, or the snapshot inside an event)."""

        def s(key: str) -> str:
            value = raw.get(key, "")
            return value.decode() if isinstance(value, bytes) else str(value)

        def n(key: str) -> int:
            return int(float(s(key) or 0))

        return cls(
            id=s("id"),
            knowledge_base=s("knowledge_base"),
            url=s("url"),
            state=JobState(s("state")),
            max_pages=n("max_pages"),
            max_depth=n("max_depth"),
            include_patterns=json.loads(s("include") or "[]"),
            exclude_patterns=json.loads(s("exclude") or "[]"),
            pages_discovered=n("pages_discovered"),
            pages_done=n("pages_done"),
            pages_failed=n("pages_failed"),
            pages_skipped=n("pages_skipped"),
            chunks_indexed=n("chunks_indexed"),
            pages_beyond_max_pages=n("pages_beyond_max_pages"),
            outstanding=n("outstanding"),
            created_at=_f(s("created_at")),
            started_at=_f(s("started_at")),
            finished_at=_f(s("finished_at")),
            last_progress_at=_f(s("last_progress_at")),
            error=s("error"),
            cancel_requested=s("cancel_requested") == "1",
            render=RenderMode(s("render") or RenderMode.AUTO),
            max_concurrent_requests=n("max_concurrent_requests"),
            pages_unchanged=n("pages_unchanged"),
            pages_updated=n("pages_updated"),
            pages_added=n("pages_added"),
            pages_removed=n("pages_removed"),
            full=s("full") == "1",
            sitemap=SitemapMode(s("sitemap") or SitemapMode.INCLUDE),
        )


@dataclass(frozen=True)
class JobEvent:
    event_id: str  # "" for SNAPSHOT and HEARTBEAT
    kind: EventKind
    job: JobRecord
    page_url: str = ""
    detail: str = ""
    chunks: int = 0
    at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.kind is EventKind.STATE_CHANGED and self.job.state.terminal


@dataclass(frozen=True)
class FinishResult:
    counted: bool  # False when the page's outcome was already counted (a redelivered message)
    final_state: JobState | None  # set when this page finished the job
    sweep: bool = False  # no page is outstanding and the caller must send the job's sweep (finish_page.lua)


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def parse_event(entry_id: bytes | str, fields: Mapping[Any, Any]) -> JobEvent:
    """The event from one stream entry (XRANGE/XREAD reply: id and fields, bytes or str)."""

    def s(key: str) -> str:
        value = fields.get(key.encode(), fields.get(key, b""))
        return value.decode() if isinstance(value, bytes) else str(value)

    seq = reply_text(entry_id).split("-", 1)[0]
    return JobEvent(
        event_id=seq,
        kind=EventKind(s("kind")),
        job=JobRecord.from_fields(json.loads(s("job"))),
        page_url=s("url"),
        detail=s("detail"),
        chunks=int(s("chunks") or 0),
        at=_f(s("at")),
    )


def parse_cursor(after_event_id: str) -> int:
    """Event ids are decimal sequence numbers; '' means before the first event."""
    if not after_event_id:
        return 0
    if not after_event_id.isdigit():
        raise InvalidArgument(
            f"after_event_id {after_event_id!r} is not an event id; pass the event_id of the last event seen"
        )
    return int(after_event_id)


def check_retained(cursor: int, first_retained: int | None, last: int) -> None:
    """Raise OutOfRange when events after `cursor` were trimmed from the log."""
    if cursor > last:
        raise OutOfRange(f"after_event_id {cursor} is after the job's last event ({last})")
    if first_retained is not None and cursor < first_retained - 1:
        raise OutOfRange(
            f"events after {cursor} are no longer retained (oldest kept: {first_retained}); "
            "watch again without after_event_id to start from the oldest retained event"
        )
