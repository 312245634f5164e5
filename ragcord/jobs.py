"""Crawl jobs in Redis: the record, its counters and its append-only event log.

Every change that touches more than one key runs as one Lua script, so counters, state and the event log
never disagree, and redelivered messages or a worker dying mid-page cannot count a page twice or write
two terminal events.

Keys (P = settings.key_prefix, J = job id):
  P:jobs          sorted set of job ids scored by creation time (for ListJobs, newest first)
  P:job:J         hash: the job record (fields of JobRecord, plus `outstanding` and `event_seq`)
  P:job:J:events  stream: the event log; entry ids are `<seq>-0`, so the event id is the sequence number
  P:job:J:seen    hash: url -> url of the page that reserved it ("" for the seed)
  P:job:J:done    set: urls whose outcome is counted
  P:job:J:hashes  hash: content hash -> url of the first page with that content
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis

from ragcord.errors import FailedPrecondition, InvalidArgument, NotFound, OutOfRange


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


class PageOutcome(StrEnum):
    INDEXED = "indexed"
    SKIPPED = "skipped"
    FAILED = "failed"


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
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    last_progress_at: float | None = None
    error: str = ""
    cancel_requested: bool = False

    @classmethod
    def from_hash(cls, job_id: str, raw: dict[bytes, bytes]) -> JobRecord:
        """The job from its Redis hash (HGETALL's reply); NotFound when the hash is empty."""
        if not raw:
            raise NotFound(f"no job with id {job_id!r}; ListJobs shows the existing ones")
        return cls.from_fields({k.decode(): v for k, v in raw.items()})

    @classmethod
    def from_fields(cls, raw: dict[str, Any]) -> JobRecord:
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
            created_at=_f(s("created_at")),
            started_at=_f(s("started_at")),
            finished_at=_f(s("finished_at")),
            last_progress_at=_f(s("last_progress_at")),
            error=s("error"),
            cancel_requested=s("cancel_requested") == "1",
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


# Shared by every script: append one event carrying a snapshot of the job.
_LUA_LIB = """
local function job_snapshot(job)
  local flat = redis.call('HGETALL', job)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return cjson.encode(t)
end
local function emit(job, stream, retention, now, kind, url, detail, chunks)
  local seq = redis.call('HINCRBY', job, 'event_seq', 1)
  redis.call('XADD', stream, 'MAXLEN', retention, seq .. '-0',
    'kind', kind, 'url', url, 'detail', detail, 'chunks', chunks, 'at', now, 'job', job_snapshot(job))
  return seq
end
local TERMINAL = {SUCCEEDED = true, FAILED = true, CANCELLED = true}
-- Ends the job when no page is outstanding; returns the final state or false.
local function finalize_if_idle(job, stream, retention, now)
  local state = redis.call('HGET', job, 'state')
  if TERMINAL[state] then return false end
  if tonumber(redis.call('HGET', job, 'outstanding') or '0') > 0 then return false end
  local final, detail
  if redis.call('HGET', job, 'cancel_requested') == '1' then
    final, detail = 'CANCELLED', 'cancelled'
  elseif tonumber(redis.call('HGET', job, 'pages_done') or '0') > 0 then
    final, detail = 'SUCCEEDED', 'succeeded'
  else
    final = 'FAILED'
    local seed_error = redis.call('HGET', job, 'seed_error')
    detail = 'no page could be indexed' .. ((seed_error and (': ' .. seed_error)) or '')
    redis.call('HSET', job, 'error', detail)
  end
  redis.call('HSET', job, 'state', final, 'finished_at', now)
  emit(job, stream, retention, now, 'STATE_CHANGED', '', detail, 0)
  return final
end
"""

# KEYS: job, events, seen, index. ARGV: now, retention, id, field/value pairs...
_CREATE = (
    _LUA_LIB
    + """
local job, stream, seen, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, retention, id = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', job) == 1 then return redis.error_reply('job exists') end
for i = 4, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
local seed = redis.call('HGET', job, 'url')
redis.call('HSET', job, 'state', 'QUEUED', 'created_at', now, 'pages_discovered', 1, 'outstanding', 1,
  'pages_done', 0, 'pages_failed', 0, 'pages_skipped', 0, 'chunks_indexed', 0, 'event_seq', 0)
redis.call('HSET', seen, seed, '')
redis.call('ZADD', index, now, id)
emit(job, stream, retention, now, 'STATE_CHANGED', '', 'queued', 0)
return 1
"""
)

# KEYS: job, events, done. ARGV: now, retention, url.
# Returns 'run', or why the page must not run: 'missing', 'terminal', 'done' (already counted),
# 'cancelled' (counted out here).
_START_PAGE = (
    _LUA_LIB
    + """
local job, stream, done = KEYS[1], KEYS[2], KEYS[3]
local now, retention, url = ARGV[1], ARGV[2], ARGV[3]
local state = redis.call('HGET', job, 'state')
if not state then return 'missing' end
if TERMINAL[state] then return 'terminal' end
if redis.call('SISMEMBER', done, url) == 1 then return 'done' end
if redis.call('HGET', job, 'cancel_requested') == '1' then
  redis.call('SADD', done, url)
  redis.call('HINCRBY', job, 'outstanding', -1)
  finalize_if_idle(job, stream, retention, now)
  return 'cancelled'
end
if state == 'QUEUED' then
  redis.call('HSET', job, 'state', 'RUNNING', 'started_at', now)
  emit(job, stream, retention, now, 'STATE_CHANGED', '', 'running', 0)
end
return 'run'
"""
)

# KEYS: job, seen. ARGV: parent, url... Returns the urls this parent reserved, now or on an earlier
# delivery of the same message, so a redelivered page re-enqueues exactly its own children.
_RESERVE_LINKS = """
local job, seen = KEYS[1], KEYS[2]
local parent = ARGV[1]
local state = redis.call('HGET', job, 'state')
local open = state == 'RUNNING' and redis.call('HGET', job, 'cancel_requested') ~= '1'
local max_pages = tonumber(redis.call('HGET', job, 'max_pages'))
local mine = {}
for i = 2, #ARGV do
  local url = ARGV[i]
  local owner = redis.call('HGET', seen, url)
  if owner == parent then
    table.insert(mine, url)
  elseif not owner and open then
    if tonumber(redis.call('HGET', job, 'pages_discovered')) < max_pages then
      redis.call('HSET', seen, url, parent)
      redis.call('HINCRBY', job, 'pages_discovered', 1)
      redis.call('HINCRBY', job, 'outstanding', 1)
      table.insert(mine, url)
    end
  end
end
return mine
"""

# KEYS: seen. ARGV: url, claimant. Claims a redirect target for the page that redirected to it;
# returns the page that owns it (the claimant, or whoever reserved it first).
_CLAIM_URL = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# KEYS: hashes. ARGV: content hash, url. Returns the url that owns this content.
_CLAIM_CONTENT = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# KEYS: job, events, done. ARGV: now, retention, url, outcome, detail, chunks, is_seed.
# Returns {counted (0/1), final state or ''}.
_FINISH_PAGE = (
    _LUA_LIB
    + """
local job, stream, done = KEYS[1], KEYS[2], KEYS[3]
local now, retention, url, outcome, detail, chunks, is_seed =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local state = redis.call('HGET', job, 'state')
if not state or TERMINAL[state] then return {0, ''} end
if redis.call('SADD', done, url) == 0 then return {0, ''} end
local counter = {indexed = 'pages_done', skipped = 'pages_skipped', failed = 'pages_failed'}
local kind = {indexed = 'PAGE_INDEXED', skipped = 'PAGE_SKIPPED', failed = 'PAGE_FAILED'}
redis.call('HINCRBY', job, counter[outcome], 1)
redis.call('HINCRBY', job, 'chunks_indexed', chunks)
redis.call('HINCRBY', job, 'outstanding', -1)
redis.call('HSET', job, 'last_progress_at', now)
if is_seed == '1' and outcome ~= 'indexed' then
  redis.call('HSET', job, 'seed_error', 'the seed page was ' .. outcome .. ': ' .. detail)
end
emit(job, stream, retention, now, kind[outcome], url, detail, chunks)
local final = finalize_if_idle(job, stream, retention, now)
return {1, final or ''}
"""
)

# KEYS: job, events. ARGV: now, retention. Returns 'missing', 'terminal' or 'ok'.
_CANCEL = (
    _LUA_LIB
    + """
local job, stream = KEYS[1], KEYS[2]
local now, retention = ARGV[1], ARGV[2]
local state = redis.call('HGET', job, 'state')
if not state then return 'missing' end
if TERMINAL[state] then return 'terminal' end
if redis.call('HGET', job, 'cancel_requested') == '1' then return 'ok' end
redis.call('HSET', job, 'cancel_requested', '1')
if state == 'QUEUED' then
  -- Nothing has started: end now; the seed message finds the job terminal and does nothing.
  redis.call('HSET', job, 'outstanding', 0)
else
  emit(job, stream, retention, now, 'STATE_CHANGED', '', 'cancel requested: in-flight pages finish', 0)
end
finalize_if_idle(job, stream, retention, now)
return 'ok'
"""
)


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def parse_event(entry_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    def s(key: str) -> str:
        value = fields.get(key.encode(), fields.get(key, b""))
        return value.decode() if isinstance(value, bytes) else str(value)

    seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-", 1)[0]
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


class JobKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index = f"{prefix}:jobs"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def seen(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:seen"

    def done(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:done"

    def hashes(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:hashes"


def check_retained(cursor: int, first_retained: int | None, last: int) -> None:
    """Raise OutOfRange when events after `cursor` were trimmed from the log."""
    if cursor > last:
        raise OutOfRange(f"after_event_id {cursor} is after the job's last event ({last})")
    if first_retained is not None and cursor < first_retained - 1:
        raise OutOfRange(
            f"events after {cursor} are no longer retained (oldest kept: {first_retained}); "
            "watch again without after_event_id to start from the oldest retained event"
        )


class JobStore:
    """Jobs, counters and events over a synchronous Redis client (workers, and the API via a thread)."""

    def __init__(self, client: redis.Redis, *, prefix: str, retention: int) -> None:
        self.redis = client
        self.keys = JobKeys(prefix)
        self.retention = retention
        self._create = client.register_script(_CREATE)
        self._start_page = client.register_script(_START_PAGE)
        self._reserve_links = client.register_script(_RESERVE_LINKS)
        self._claim_content = client.register_script(_CLAIM_CONTENT)
        self._claim_url = client.register_script(_CLAIM_URL)
        self._finish_page = client.register_script(_FINISH_PAGE)
        self._cancel = client.register_script(_CANCEL)

    # -- the API side ---------------------------------------------------------------------------------

    def create(
        self,
        *,
        knowledge_base: str,
        url: str,
        max_pages: int,
        max_depth: int,
        include_patterns: Sequence[str] = (),
        exclude_patterns: Sequence[str] = (),
    ) -> JobRecord:
        job_id = new_job_id()
        k = self.keys
        fields = {
            "id": job_id,
            "knowledge_base": knowledge_base,
            "url": url,
            "max_pages": max_pages,
            "max_depth": max_depth,
            "include": json.dumps(list(include_patterns)),
            "exclude": json.dumps(list(exclude_patterns)),
        }
        args: list[Any] = [time.time(), self.retention, job_id]
        for key, value in fields.items():
            args += [key, value]
        self._create(keys=[k.job(job_id), k.events(job_id), k.seen(job_id), k.index], args=args)
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        return JobRecord.from_hash(job_id, self.redis.hgetall(self.keys.job(job_id)) if job_id else {})

    def list(
        self,
        *,
        knowledge_base: str = "",
        state: JobState | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[JobRecord], str]:
        """Newest first. The token is the id of the last job returned."""
        start = 0
        if page_token:
            rank = self.redis.zrevrank(self.keys.index, page_token)
            if rank is None:
                raise InvalidArgument("page_token is not valid (the job it points to is gone); list again")
            start = rank + 1
        jobs: list[JobRecord] = []
        for rank, job in self._scan(start, batch=max(page_size, 100)):
            if knowledge_base and job.knowledge_base != knowledge_base:
                continue
            if state is not None and job.state is not state:
                continue
            jobs.append(job)
            if len(jobs) == page_size:
                more = self.redis.zcard(self.keys.index) > rank + 1
                return jobs, (job.id if more else "")
        return jobs, ""

    def active(self, knowledge_base: str) -> list[JobRecord]:
        """The knowledge base's jobs that have not ended (QUEUED or RUNNING), newest first."""
        return [
            job for _, job in self._scan(0) if job.knowledge_base == knowledge_base and not job.state.terminal
        ]

    def _scan(self, start: int, *, batch: int = 100) -> Iterator[tuple[int, JobRecord]]:
        """(rank, job) from rank `start` on, newest first; one round trip per batch, not per job."""
        while ids := self.redis.zrevrange(self.keys.index, start, start + batch - 1):
            pipe = self.redis.pipeline(transaction=False)
            for raw_id in ids:
                pipe.hgetall(self.keys.job(raw_id.decode()))
            for offset, (raw_id, raw) in enumerate(zip(ids, pipe.execute(), strict=True)):
                if raw:  # (else expired between the index read and now)
                    yield start + offset, JobRecord.from_hash(raw_id.decode(), raw)
            start += batch

    def cancel(self, job_id: str) -> JobRecord:
        outcome = self._cancel(
            keys=[self.keys.job(job_id), self.keys.events(job_id)], args=[time.time(), self.retention]
        )
        outcome = outcome.decode()
        if outcome == "missing":
            raise NotFound(f"no job with id {job_id!r}")
        if outcome == "terminal":
            job = self.get(job_id)
            raise FailedPrecondition(f"job {job_id} already ended {job.state.value}; nothing to cancel")
        return self.get(job_id)

    def events(self, job_id: str, after: int = 0, count: int = 1000) -> list[JobEvent]:
        """Events after sequence number `after` (no blocking)."""
        entries = self.redis.xrange(
            self.keys.events(job_id), min=f"({after}-0" if after else "-", count=count
        )
        return [parse_event(entry_id, fields) for entry_id, fields in entries]

    # -- the worker side ------------------------------------------------------------------------------

    def start_page(self, job_id: str, url: str) -> str:
        k = self.keys
        result = self._start_page(
            keys=[k.job(job_id), k.events(job_id), k.done(job_id)], args=[time.time(), self.retention, url]
        )
        return result.decode()

    def reserve_links(self, job_id: str, parent: str, urls: Sequence[str]) -> list[str]:
        if not urls:
            return []
        reserved = self._reserve_links(
            keys=[self.keys.job(job_id), self.keys.seen(job_id)], args=[parent, *urls]
        )
        return [u.decode() for u in reserved]

    def claim_redirect(self, job_id: str, page: str, target: str) -> bool:
        """True when `page` may fetch `target` (it redirected there); False when the crawl has it already."""
        if target == page:
            return True
        owner = self._claim_url(keys=[self.keys.seen(job_id)], args=[target, page]).decode()
        return owner == page

    def claim_content(self, job_id: str, url: str, content_hash: str) -> str:
        return self._claim_content(keys=[self.keys.hashes(job_id)], args=[content_hash, url]).decode()

    def finish_page(
        self,
        job_id: str,
        url: str,
        outcome: PageOutcome,
        detail: str = "",
        chunks: int = 0,
        *,
        is_seed: bool = False,
    ) -> FinishResult:
        k = self.keys
        counted, final = self._finish_page(
            keys=[k.job(job_id), k.events(job_id), k.done(job_id)],
            args=[
                time.time(),
                self.retention,
                url,
                outcome.value,
                detail[:500],
                chunks,
                "1" if is_seed else "0",
            ],
        )
        final_state = JobState(final.decode()) if final else None
        return FinishResult(counted=bool(counted), final_state=final_state)


class JobWatcher:
    """WatchJob's core: a snapshot, then the log after a cursor as it grows, heartbeats while idle.

    Uses the asyncio Redis client so a watcher costs a blocked read, not a thread.
    """

    def __init__(self, client, *, prefix: str, heartbeat_seconds: float) -> None:
        self.redis = client  # redis.asyncio.Redis
        self.keys = JobKeys(prefix)
        self.heartbeat_ms = max(1, int(heartbeat_seconds * 1000))

    async def _job(self, job_id: str) -> JobRecord:
        return JobRecord.from_hash(job_id, await self.redis.hgetall(self.keys.job(job_id)) if job_id else {})

    async def _bounds(self, job_id: str) -> tuple[int | None, int]:
        first = await self.redis.xrange(self.keys.events(job_id), count=1)
        last = int(await self.redis.hget(self.keys.job(job_id), "event_seq") or 0)
        first_seq = int(first[0][0].decode().split("-", 1)[0]) if first else None
        return first_seq, last

    async def watch(self, job_id: str, after_event_id: str = ""):
        cursor = parse_cursor(after_event_id)
        job = await self._job(job_id)
        first, last = await self._bounds(job_id)
        check_retained(cursor, first, last)
        yield JobEvent(event_id="", kind=EventKind.SNAPSHOT, job=job, at=time.time())
        if job.state.terminal and cursor >= last:
            return
        stream = self.keys.events(job_id)
        while True:
            reply = await self.redis.xread({stream: f"{cursor}-0"}, count=200, block=self.heartbeat_ms)
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
