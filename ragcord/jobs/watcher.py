"""JobWatcher: WatchJob's reader of a job's event log, over the asyncio Redis client.

Fan-out: a process reads each watched job's stream once (`_Feed`, one blocking XREAD per job) and hands
the events to every watcher of that job through a bounded queue of its own. A watcher thus costs a queue,
not a Redis connection. A watcher that falls behind (its queue full) is not waited for: its queue is
emptied and it catches up from the stream with its own cursor (XRANGE, a page at a time), so every
watcher still sees every event exactly once, in order, and one slow client neither holds the others back
nor grows memory without bound.
"""

from __future__ import annotations

import asyncio
import copy
import enum
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


class _Signal(enum.Enum):
    RESYNC = "resync"  # the queue overflowed and was emptied: read the missed events from the stream
    CLOSED = "closed"  # the feed stopped reading (terminal event, or its reader failed)


_Item = JobEvent | _Signal | BaseException


class _Subscriber:
    """One watcher's place in a feed: a bounded queue, and whether it overflowed."""

    __slots__ = ("overflowed", "queue")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=size + 2)  # room for the signals
        self.overflowed = False


class _Feed:
    """The one reader of a job's stream in this process, and the watchers it hands the events to."""

    def __init__(self, watcher: JobWatcher, job_id: str, cursor: int, queue_size: int) -> None:
        self.watcher = watcher
        self.job_id = job_id
        self.queue_size = queue_size
        self.subscribers: set[_Subscriber] = set()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._read(cursor), name=f"watch-feed-{job_id}")

    def offer(self, item: _Item) -> None:
        for sub in self.subscribers:
            if sub.overflowed and item is not _Signal.CLOSED:
                continue  # it reads the stream itself; only the feed's end still concerns it
            if sub.queue.qsize() >= self.queue_size and not isinstance(item, _Signal):
                # Too slow to keep up: drop what it has buffered; it reads it back from the stream.
                sub.overflowed = True
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(_Signal.RESYNC)
                continue
            sub.queue.put_nowait(item)

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
                    self.offer(JobEvent(event_id="", kind=EventKind.HEARTBEAT, job=job, at=time.time()))
                    continue
                for entry_id, fields in reply[0][1]:
                    event = parse_event(entry_id, fields)
                    cursor = int(event.event_id)
                    self.offer(event)
                    if event.terminal:
                        return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every watcher of the job hears it
            self.offer(exc)
        finally:
            self.closed = True
            self.watcher._forget(self)
            self.offer(_Signal.CLOSED)


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
        queue_events: int = 256,
        read_concurrency: int = 32,
        blocking_reads: int = 64,
    ) -> None:
        self.redis = client
        self.keys = JobKeys(prefix)
        self.heartbeat_ms = max(1, int(heartbeat_seconds * 1000))
        self.max_streams = max_streams
        self.queue_events = queue_events
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
        """The events after `cursor` to the terminal one: from the stream, then from the job's feed.

        Events are told apart by their sequence number: one at or before the cursor is a repeat (the feed
        and a catch-up overlap) and is skipped; one after a gap means events were missed, which a
        catch-up reads from the stream.
        """
        sub = _Subscriber(self.queue_events)
        feed = self._join(job_id, cursor, sub) if from_feed else None
        try:
            catch_up = True
            while True:
                if catch_up:
                    catch_up = False
                    async for event in self._catch_up(job_id, cursor):
                        cursor = int(event.event_id)
                        yield event
                        if event.terminal:
                            return
                    if feed is None:  # a finished job whose stream holds no terminal event: nothing follows
                        return
                item = await sub.queue.get()
                if item is _Signal.RESYNC:
                    sub.overflowed = False
                    catch_up = True
                elif item is _Signal.CLOSED:
                    assert feed is not None
                    # The feed stopped without this watcher seeing the end: read on with a new one.
                    feed.subscribers.discard(sub)
                    feed = self._join(job_id, cursor, sub)
                    catch_up = True
                elif isinstance(item, BaseException):
                    raise _fresh(item)
                elif not item.event_id:
                    yield item  # a heartbeat
                elif (seq := int(item.event_id)) <= cursor:
                    continue
                elif seq > cursor + 1:
                    catch_up = True
                else:
                    cursor = seq
                    yield item
                    if item.terminal:
                        return
        finally:
            if feed is not None:
                self._leave(feed, sub)

    async def _catch_up(self, job_id: str, cursor: int) -> AsyncIterator[JobEvent]:
        """The events after `cursor` that are in the stream now, a page at a time, to the terminal one."""
        stream = self.keys.events(job_id)
        while True:
            async with self._reads:
                entries = cast(
                    "list[StreamEntry]",
                    await _uncancelled(self.redis.xrange(stream, min=f"{cursor + 1}-0", count=_PAGE)),
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

    def _join(self, job_id: str, cursor: int, sub: _Subscriber) -> _Feed:
        feed = self._feeds.get(job_id)
        if feed is None or feed.closed:
            feed = self._feeds[job_id] = _Feed(self, job_id, cursor, self.queue_events)
        sub.overflowed = False
        feed.subscribers.add(sub)
        return feed

    def _leave(self, feed: _Feed, sub: _Subscriber) -> None:
        feed.subscribers.discard(sub)
        if not feed.subscribers and not feed.closed:
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
