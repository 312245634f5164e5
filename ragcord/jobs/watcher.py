"""JobWatcher: WatchJob's reader of a job's event log, over the asyncio Redis client."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import cast

import redis.asyncio

from ragcord.errors import OutOfRange
from ragcord.jobs.keys import JobKeys
from ragcord.jobs.records import (
    EventKind,
    JobEvent,
    JobRecord,
    StreamEntry,
    check_retained,
    parse_cursor,
    parse_event,
)

__all__ = ["JobWatcher"]


class JobWatcher:
    """WatchJob's core: a snapshot, then the log after a cursor as it grows, heartbeats while idle.

    Uses the asyncio Redis client so a watcher costs a blocked read, not a thread.
    """

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str, heartbeat_seconds: float) -> None:
        self.redis = client
        self.keys = JobKeys(prefix)
        self.heartbeat_ms = max(1, int(heartbeat_seconds * 1000))

    async def _job(self, job_id: str) -> JobRecord:
        return JobRecord.from_hash(job_id, await self.redis.hgetall(self.keys.job(job_id)) if job_id else {})

    async def _bounds(self, job_id: str) -> tuple[int | None, int]:
        first = cast("list[StreamEntry]", await self.redis.xrange(self.keys.events(job_id), count=1))
        last = int(await self.redis.hget(self.keys.job(job_id), "event_seq") or 0)
        first_seq = int(first[0][0].decode().split("-", 1)[0]) if first else None
        return first_seq, last

    async def watch(self, job_id: str, after_event_id: str = "") -> AsyncIterator[JobEvent]:
        cursor = parse_cursor(after_event_id)
        job = await self._job(job_id)
        first, last = await self._bounds(job_id)
        check_retained(cursor, first, last)
        yield JobEvent(event_id="", kind=EventKind.SNAPSHOT, job=job, at=time.time())
        if job.state.terminal and cursor >= last:
            return
        stream = self.keys.events(job_id)
        while True:
            reply = cast(
                "list[tuple[bytes, list[StreamEntry]]]",
                await self.redis.xread({stream: f"{cursor}-0"}, count=200, block=self.heartbeat_ms),
            )
            if not reply:
                yield JobEvent(
                    event_id="", kind=EventKind.HEARTBEAT, job=await self._job(job_id), at=time.time()
                )
                continue
            for entry_id, fields in reply[0][1]:
                event = parse_event(entry_id, fields)
                seq = int(event.event_id)
                if seq > cursor + 1:
                    raise OutOfRange(
                        f"events {cursor + 1}..{seq - 1} were trimmed before this watcher read them; "
                        f"watch again with after_event_id={cursor}... or without a cursor"
                    )
                cursor = seq
                yield event
                if event.terminal:
                    return
