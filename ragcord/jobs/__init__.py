"""Crawl jobs in Redis: the record, its counters and its append-only event log.

- `records`: states, the job record, events, cursors (no Redis)
- `keys`: where a job lives in Redis
- `store`: `JobStore`, the synchronous writes (each multi-key change one Lua script in `lua/`)
- `watcher`: `JobWatcher`, WatchJob's asynchronous reader of the event log
"""

from __future__ import annotations

from ragcord.jobs.keys import JobKeys
from ragcord.jobs.records import (
    EventKind,
    FinishResult,
    JobEvent,
    JobRecord,
    JobState,
    PageOutcome,
    RenderMode,
    SitemapMode,
    check_retained,
    new_job_id,
    parse_cursor,
    parse_event,
)
from ragcord.jobs.store import JobStore
from ragcord.jobs.watcher import JobWatcher

__all__ = [
    "EventKind",
    "FinishResult",
    "JobEvent",
    "JobKeys",
    "JobRecord",
    "JobState",
    "JobStore",
    "JobWatcher",
    "PageOutcome",
    "RenderMode",
    "SitemapMode",
    "check_retained",
    "new_job_id",
    "parse_cursor",
    "parse_event",
]
