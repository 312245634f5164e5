"""JobWatcher: WatchJob's reader of a job's event log, over the asyncio Redis client.

Fan-out: a process reads each watched job's stream once (`_Feed`, one blocking XREAD per job) into a window
of the job's latest events in memory, shared by every watcher of the job; a watcher keeps only its cursor.
Handing an event to N watchers costs N wake-ups, not N copies or queue slots, so no watcher waits for
another and none is cut off. A watcher that falls behind the window (its client reads slower than the
crawl writes) reads what it missed from the stream itself (XRANGE, a page at a time), then follows the
window again: every watcher sees every event exactly once, in order, and memory is bounded by the window,
whatever the number of watchers.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar, cast

import redis.asyncio

from ragcord.errors import OutOfRange, RagcordError
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

__all__ = ["JobWatcher", "WatchLimitReached", "settle_reads"]

log = logging.getLogger(__name__)

_PAGE = 200  # stream entries per XREAD/XRANGE
T = TypeVar("T")
_READ_TASK = "ragcord-watch-read"


class WatchLimitReached(RagcordError):
    """This process already serves as many watch streams as it may (RAGCORD_WATCH_MAX_STREAMS)."""


class _Feed:
    """The one reader of a job's stream in this process: its latest events, shared by the job's watchers.

    `events` holds consecutive events, the first one numbered `first`; watchers wait on `changed`, which is
    set (and replaced) whenever an event, a heartbeat or the end of the feed arrives.
    """

    def __init__(self, watcher: JobWatcher, job_id: str, cursor: int, window: int) -> None:
        self.watcher = watcher
        self.job_id = job_id
        self.events: collections.deque[JobEvent] = collections.deque(maxlen=window)
        self.first = cursor + 1  # the sequence number of events[0] (or of the next event, when empty)
        self.heartbeat: JobEvent | None = None
        self.beats = 0  # heartbeats so far: a watcher sends one when it sees this change while idle
        self.error: BaseException | None = None
        self.closed = False
        self.watchers = 0
        self.changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._read(cursor), name=f"watch-feed-{job_id}")

    @property
    def last(self) -> int:
        """The sequence number of the newest event read (the cursor the feed started from when none)."""
        return self.first + len(self.events) - 1

    def after(self, cursor: int) -> JobEvent | None:
        """The event following `cursor` if the window holds it."""
        index = cursor + 1 - self.first
        return self.events[index] if 0 <= index < len(self.events) else None

    def _wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def _append(self, event: JobEvent) -> None:
        if len(self.events) == self.events.maxlen:
            self.first += 1  # the oldest leaves the window; a watcher still before it reads the stream
        self.events.append(event)

    async def _read(self, cursor: int) -> None:
        watcher, stream = self.watcher, self.watcher.keys.events(self.job_id)
        try:
            while True:
                async with watcher._blocking_reads:  # past that many watched jobs, feeds take turns
                    reply = cast(
                        "list[tuple[bytes, list[StreamEntry]]]",
                        await _uncancelled(
                            watcher.redis.xread(
                                {stream: f"{cursor}-0"}, count=_PAGE, block=watcher.heartbeat_ms
                            )
                        ),
                    )
                if not reply:
                    async with watcher._reads:
                        job = await watcher._job(self.job_id)
                    self.heartbeat = JobEvent(event_id="", kind=EventKind.HEARTBEAT, job=job, at=time.time())
                    self.beats += 1
                    self._wake()
                    continue
                terminal = False
                for entry_id, fields in reply[0][1]:
                    event = parse_event(entry_id, fields)
                    seq = int(event.event_id)
                    if seq != cursor + 1:  # trimmed under us: the window must stay gapless
                        self.events.clear()
                        self.first = seq
                    cursor = seq
                    self._append(event)
                    terminal = terminal or event.terminal
                self._wake()
                if terminal:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every watcher of the job hears it
            self.error = exc
        finally:
            self.closed = True
            self.watcher._forget(self)
            self._wake()


class JobWatcher:
    """WatchJob's core: a snapshot, then the log after a cursor as it grows, heartbeats while idle.

    Uses the asyncio Redis client: one blocked read per watched job, shared by all its watchers, and at
    most `read_concurrency` short reads (snapshots, catch-ups) and `blocking_reads` blocked reads (jobs
    beyond that take turns, a heartbeat interval each) at a time: together within redis.asyncio's pool of
    100 connections, whatever the number of watchers and jobs. Beyond `max_streams` watchers, `watch`
    raises WatchLimitReached.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str,
        heartbeat_seconds: float,
        max_streams: int = 5000,
        window_events: int = 1024,
        read_concurrency: int = 32,
        blocking_reads: int = 64,
    ) -> None:
        self.redis = client
        self.keys = JobKeys(prefix)
        self.heartbeat_ms = max(1, int(heartbeat_seconds * 1000))
        self.max_streams = max_streams
        self.window = window_events
        self.streams = 0
        self._feeds: dict[str, _Feed] = {}
        self._reads = asyncio.Semaphore(read_concurrency)
        self._blocking_reads = asyncio.Semaphore(blocking_reads)

    @property
    def feeds(self) -> int:
        """How many jobs this process is reading (one Redis read each)."""
        return len(self._feeds)

    async def _job(self, job_id: str) -> JobRecord:
        return JobRecord.from_hash(
            job_id, await _uncancelled(self.redis.hgetall(self.keys.job(job_id))) if job_id else {}
        )

    async def _bounds(self, job_id: str) -> tuple[int | None, int]:
        first = cast(
            "list[StreamEntry]", await _uncancelled(self.redis.xrange(self.keys.events(job_id), count=1))
        )
        last = int(await _uncancelled(self.redis.hget(self.keys.job(job_id), "event_seq")) or 0)
        first_seq = int(first[0][0].decode().split("-", 1)[0]) if first else None
        return first_seq, last

    async def watch(self, job_id: str, after_event_id: str = "") -> AsyncIterator[JobEvent]:
        cursor = parse_cursor(after_event_id)
        if self.streams >= self.max_streams:
            raise WatchLimitReached(
                f"this server already serves {self.streams} watch streams, its limit "
                "(RAGCORD_WATCH_MAX_STREAMS); try again later, resuming with after_event_id, "
                "or watch through another server"
            )
        self.streams += 1
        try:
            async with self._reads:
                job = await self._job(job_id)
                first, last = await self._bounds(job_id)
            check_retained(cursor, first, last)
            yield JobEvent(event_id="", kind=EventKind.SNAPSHOT, job=job, at=time.time())
            if job.state.terminal and cursor >= last:
                return
            async for event in self._follow(job_id, cursor, from_feed=not job.state.terminal):
                yield event
        finally:
            self.streams -= 1

    async def _follow(self, job_id: str, cursor: int, *, from_feed: bool) -> AsyncIterator[JobEvent]:
        """The events after `cursor` to the terminal one: from the job's feed, and from the stream for what
        the feed's window no longer (or not yet) holds. Heartbeats only while caught up."""
        if not from_feed:  # a finished job: what the stream holds is all there is
            async for event in self._catch_up(job_id, cursor):
                yield event
            return
        feed = self._join(job_id, cursor)
        beats = feed.beats
        try:
            while True:
                changed = feed.changed
                if (ready := feed.after(cursor)) is not None:
                    cursor = int(ready.event_id)
                    yield ready
                    if ready.terminal:
                        return
                elif cursor + 1 < feed.first:  # behind the window: read the gap from the stream
                    async for event in self._catch_up(job_id, cursor, until=feed.first - 1):
                        cursor = int(event.event_id)
                        yield event
                        if event.terminal:
                            return
                elif feed.error is not None:
                    raise _fresh(feed.error)
                elif feed.closed:  # it stopped without this watcher seeing the end: follow a new one
                    self._leave(feed)
                    feed = self._join(job_id, cursor)
                    beats = feed.beats
                elif feed.beats != beats and feed.heartbeat is not None:
                    beats = feed.beats
                    yield feed.heartbeat
                else:
                    await changed.wait()
        finally:
            self._leave(feed)

    async def _catch_up(self, job_id: str, cursor: int, until: int | None = None) -> AsyncIterator[JobEvent]:
        """The events after `cursor` (up to `until`) that are in the stream now, a page at a time, to the
        terminal one."""
        stream = self.keys.events(job_id)
        last = f"{until}-0" if until is not None else "+"
        while True:
            async with self._reads:
                entries = cast(
                    "list[StreamEntry]",
                    await _uncancelled(
                        self.redis.xrange(stream, min=f"{cursor + 1}-0", max=last, count=_PAGE)
                    ),
                )
            for entry_id, fields in entries:
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
            if len(entries) < _PAGE:
                return

    def _join(self, job_id: str, cursor: int) -> _Feed:
        feed = self._feeds.get(job_id)
        if feed is None or feed.closed:
            feed = self._feeds[job_id] = _Feed(self, job_id, cursor, self.window)
        feed.watchers += 1
        return feed

    def _leave(self, feed: _Feed) -> None:
        feed.watchers -= 1
        if not feed.watchers and not feed.closed:
            feed.closed = True
            self._forget(feed)
            feed.task.cancel()

    def _forget(self, feed: _Feed) -> None:
        if self._feeds.get(feed.job_id) is feed:
            del self._feeds[feed.job_id]


def _uncancelled(command: Awaitable[T]) -> Awaitable[T]:
    """The command run to its end even when its waiter is cancelled (a client leaving mid-read).

    Cancelling a redis.asyncio command mid-reply (redis 8.1) sometimes leaves the cancelled task hanging;
    shielded, the waiter leaves at once and the command finishes on its own (a blocked XREAD within a
    heartbeat interval), its connection going back to the pool.
    """
    task = asyncio.ensure_future(command)
    task.set_name(_READ_TASK)
    task.add_done_callback(_retrieve)
    return asyncio.shield(task)


async def settle_reads(timeout: float) -> None:
    """On shutdown, after the watchers have gone: let the reads they left finish (a blocked XREAD ends
    within a heartbeat interval), so closing the loop does not cancel a command mid-reply."""
    pending = [task for task in asyncio.all_tasks() if task.get_name() == _READ_TASK and not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # nobody may be waiting any more: no "exception was never retrieved"


def _fresh(exc: BaseException) -> BaseException:
    """A copy of the feed's error for one watcher (one object raised in many tasks piles up tracebacks)."""
    try:
        return copy.copy(exc).with_traceback(None)
    except Exception:  # noqa: BLE001 - an exception type that cannot be copied
        return exc
