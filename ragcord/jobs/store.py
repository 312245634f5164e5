"""JobStore: jobs, counters and events over a synchronous Redis client.

Every change to a job runs as one Lua script (`lua/*.lua`) over that job's keys only, so its counts, state and
event log never disagree, and redelivered messages or a worker dying mid-page cannot count a page twice or
write two terminal events. The job's keys share a hash tag, so each script runs on Redis Cluster too.

The cross-job keys (the index of all jobs, the active and expiring sets, the counters of all jobs) live in
other slots, so they are updated beside the scripts, each step safe to repeat: a job is indexed before it
is created (an index entry without a record is trimmed on read), and a job's end is recorded by whoever
removes it from the active set (ZREM answers 1 once), also on read when a process died in between. A
process dying between a page's script and its counters' HINCRBY loses that page from the counters of all
jobs (never from the job's own), the price of running on a cluster.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import redis

from ragcord.errors import FailedPrecondition, InvalidArgument, NotFound
from ragcord.jobs.keys import JobKeys, legacy_job_keys
from ragcord.jobs.records import (
    FinishResult,
    JobEvent,
    JobRecord,
    JobState,
    PageOutcome,
    RenderMode,
    StreamEntry,
    new_job_id,
    parse_event,
)
from ragcord.lua import script_source

__all__ = ["DEFAULT_KEEP_SECONDS", "LOADING_MODEL", "JobStore"]

DEFAULT_KEEP_SECONDS = 30 * 86400.0  # Settings.job_retention_days' default
# Job.waiting_for while a worker says it is loading the embedding model and no page is done yet.
LOADING_MODEL = "workers: loading the embedding model"


def _script(name: str, *, with_lib: bool) -> str:
    """A job script's text; the ones that write events or end the job run after the shared `lib.lua`."""
    paths = ("lua/lib.lua", f"lua/{name}.lua") if with_lib else (f"lua/{name}.lua",)
    return script_source("ragcord.jobs", *paths)


class JobStore:
    """Jobs, counters and events over a synchronous Redis client (workers, and the API via a thread)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        retention: int,
        keep_seconds: float = DEFAULT_KEEP_SECONDS,
    ) -> None:
        """`retention`: events kept per job's stream; `keep_seconds`: how long an ended job's record and
        events stay (Settings.job_retention_seconds)."""
        if keep_seconds <= 0:
            raise ValueError("keep_seconds must be positive")
        self.redis = client
        self.keys = JobKeys(prefix)
        self.retention = retention
        self.keep_ms = max(1, round(keep_seconds * 1000))
        self._create = client.register_script(_script("create", with_lib=True))
        self._start_page = client.register_script(_script("start_page", with_lib=True))
        self._reserve_links = client.register_script(_script("reserve_links", with_lib=False))
        self._claim_content = client.register_script(_script("claim_content", with_lib=False))
        self._claim_url = client.register_script(_script("claim_url", with_lib=False))
        self._finish_page = client.register_script(_script("finish_page", with_lib=True))
        self._cancel = client.register_script(_script("cancel", with_lib=True))
        self._end_sweep = client.register_script(_script("end_sweep", with_lib=True))

    # -- the API side ---------------------------------------------------------------------------------
    # (`list` below is a method, so annotations in this class spell the builtin `builtins.list`.)

    def create(
        self,
        *,
        knowledge_base: str,
        url: str,
        max_pages: int,
        max_depth: int,
        include_patterns: Sequence[str] = (),
        exclude_patterns: Sequence[str] = (),
        render: RenderMode = RenderMode.AUTO,
        job_id: str | None = None,
    ) -> JobRecord:
        """`job_id`: one the caller made with `new_job_id` (to claim the knowledge base under it first)."""
        job_id = job_id or new_job_id()
        k = self.keys
        fields = {
            "id": job_id,
            "knowledge_base": knowledge_base,
            "url": url,
            "max_pages": max_pages,
            "max_depth": max_depth,
            "include": json.dumps(list(include_patterns)),
            "exclude": json.dumps(list(exclude_patterns)),
            "render": render.value,
        }
        now = time.time()
        args: builtins.list[Any] = [now, self.retention, job_id]
        for key, value in fields.items():
            args += [key, value]
        self._trim_expired(now)
        with self.redis.pipeline(transaction=False) as pipe:  # indexed first: a ghost is trimmed on read
            pipe.zadd(k.index, {job_id: now})
            pipe.zadd(k.active, {job_id: now})
            pipe.execute()
        self._create(keys=[k.job(job_id), k.events(job_id), k.seen(job_id)], args=args)
        self.redis.hincrby(k.counters, "jobs_created", 1)
        return self.get(job_id)

    def _trim_expired(self, now: float) -> None:
        """A bounded step per new job keeps the index as long as the retained jobs, however many jobs ran."""
        k = self.keys
        gone = cast(
            "builtins.list[bytes]", self.redis.zrangebyscore(k.expiring, "-inf", now, start=0, num=100)
        )
        if gone:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(k.index, *gone)
                pipe.zrem(k.expiring, *gone)
                pipe.execute()

    def _record_end(self, job_id: str) -> None:
        """An ended job leaves the active set, enters the expiring one and is counted, once: whoever
        removes it from the active set does the rest (job scripts end jobs in their own slot, without these
        keys)."""
        k = self.keys
        state, finished = cast(
            "builtins.list[bytes | None]", self.redis.hmget(k.job(job_id), "state", "finished_at")
        )
        if state is None or not JobState(state.decode()).terminal:
            return
        if not self.redis.zrem(k.active, job_id):
            return  # recorded already (or by another process just now)
        ends = (float(finished) if finished else time.time()) + self.keep_ms / 1000
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(k.expiring, {job_id: ends})
            pipe.hincrby(k.counters, f"jobs_{state.decode().lower()}", 1)
            pipe.execute()

    def get(self, job_id: str) -> JobRecord:
        """The job, with what it waits for while it has done no page; NotFound when unknown or expired."""
        job = JobRecord.from_hash(job_id, self.redis.hgetall(self.keys.job(job_id)) if job_id else {})
        if job.state.terminal or job.pages_done + job.pages_skipped + job.pages_failed:
            return job
        if self.workers_loading():
            return dataclasses.replace(job, waiting_for=LOADING_MODEL)
        return job

    def list(
        self,
        *,
        knowledge_base: str = "",
        state: JobState | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[builtins.list[JobRecord], str]:
        """Newest first. The token is the id of the last job returned."""
        start = 0
        if page_token:
            rank = self.redis.zrevrank(self.keys.index, page_token)
            if not isinstance(rank, int):  # None: not in the index
                raise InvalidArgument("page_token is not valid (the job it points to is gone); list again")
            start = rank + 1
        jobs: builtins.list[JobRecord] = []
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

    def active(self, knowledge_base: str = "") -> builtins.list[JobRecord]:
        """The jobs that have not ended (QUEUED or RUNNING), of one knowledge base or all, newest first.

        Reads the active set only: the cost grows with the jobs running, not with every job ever run."""
        ids = cast("builtins.list[bytes]", self.redis.zrevrange(self.keys.active, 0, -1))
        jobs = self._records(ids, self.keys.active)
        for job in jobs:
            if job.state.terminal:  # its end was not recorded (a process died right after ending it)
                self._record_end(job.id)
        return [
            job
            for job in jobs
            if not job.state.terminal and (not knowledge_base or job.knowledge_base == knowledge_base)
        ]

    def _records(self, ids: builtins.list[bytes], index: str) -> builtins.list[JobRecord]:
        """The jobs of `ids` in one round trip; ids whose record expired are dropped from `index`."""
        pipe = self.redis.pipeline(transaction=False)
        for raw_id in ids:
            pipe.hgetall(self.keys.job(raw_id.decode()))
        jobs, ghosts = [], []
        for raw_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                jobs.append(JobRecord.from_hash(raw_id.decode(), raw))
            else:
                ghosts.append(raw_id)
        if ghosts:
            self.redis.zrem(index, *ghosts)
        return jobs

    def _scan(self, start: int, *, batch: int = 100) -> Iterator[tuple[int, JobRecord]]:
        """(rank, job) from rank `start` on, newest first; one round trip per batch, not per job. Jobs whose
        record expired are skipped and trimmed from the index (ListJobs shows no ghosts)."""
        while True:
            end = start + batch - 1
            ids = cast("builtins.list[bytes]", self.redis.zrevrange(self.keys.index, start, end))
            if not ids:
                return
            jobs = self._records(ids, self.keys.index)
            # Ranks after trimming: the ghosts left the index, so the next batch starts that much earlier.
            for offset, job in enumerate(jobs):
                yield start + offset, job
            start += len(jobs)

    def _indexed(self, batch: int) -> Iterator[builtins.list[str]]:
        """Every job id of the index, `batch` at a time, oldest first."""
        for start in itertools.count(0, batch):
            members = self.redis.zrange(self.keys.index, start, start + batch - 1)
            if not members:
                return
            yield [raw.decode() for raw in cast("builtins.list[bytes]", members)]

    def expire_unexpiring(self, *, batch: int = 500) -> int:
        """Ended jobs that have no expiry (they ended before retention existed) get it now, counted from when
        they ended; returns how many. Idempotent and cheap when there are none: the API runs it at start.

        An ended job's record never changes again, so this needs no script: nothing races it.
        """
        k = self.keys
        migrated = 0
        for ids in self._indexed(batch):
            read = self.redis.pipeline(transaction=False)
            for job_id in ids:
                read.zscore(k.expiring, job_id)
                read.pttl(k.job(job_id))
                read.hmget(k.job(job_id), "state", "finished_at")
            found = read.execute()
            now = time.time()
            fix = self.redis.pipeline(transaction=False)
            for i, job_id in enumerate(ids):
                expiring, ttl, (state, finished) = found[3 * i : 3 * i + 3]
                if (
                    expiring is not None
                    or ttl != -1
                    or state is None
                    or not JobState(state.decode()).terminal
                ):
                    continue  # already expiring, gone (ListJobs trims it), or still running
                ends = (float(finished) if finished else now) + self.keep_ms / 1000
                left_ms = max(1, round((ends - now) * 1000))
                for key in k.retained(job_id):
                    fix.pexpire(key, left_ms)
                fix.zadd(k.expiring, {job_id: ends})
                fix.delete(*k.scratch(job_id))
                migrated += 1
            fix.execute()
        return migrated

    def migrate_hash_tags(self, *, batch: int = 500) -> int:
        """Jobs whose keys still have their names from before the cluster hash tags (`P:job:J...`) get the new
        ones (`P:job:{J}...`, RENAME keeps their TTL); returns how many. Idempotent and cheap when there are
        none: the API runs it at start. Such keys exist only on a single Redis (a cluster could not run the
        scripts that wrote them), where RENAME across slots is allowed. Workers of the old version must be
        stopped first: one still writing under the old names would recreate them."""
        k = self.keys
        migrated = 0
        for ids in self._indexed(batch):
            read = self.redis.pipeline(transaction=False)
            for job_id in ids:
                read.exists(k.job(job_id))
                for old in legacy_job_keys(k.prefix, job_id):
                    read.exists(old)
            found = iter(read.execute())
            rename = self.redis.pipeline(transaction=False)
            for job_id in ids:
                tagged = next(found)
                olds = [old for old in legacy_job_keys(k.prefix, job_id) if next(found)]
                if tagged or not olds:
                    continue
                for old, new in zip(legacy_job_keys(k.prefix, job_id), k.all_of(job_id), strict=True):
                    if old in olds:
                        rename.rename(old, new)
                migrated += 1
            rename.execute()
        return migrated

    def cancel(self, job_id: str) -> JobRecord:
        outcome = self._cancel(
            keys=self.keys.ending(job_id), args=[time.time(), self.retention, self.keep_ms]
        )
        outcome = outcome.decode()
        if outcome == "missing":
            raise NotFound(f"no job with id {job_id!r}")
        if outcome == "terminal":
            job = self.get(job_id)
            raise FailedPrecondition(f"job {job_id} already ended {job.state.value}; nothing to cancel")
        self._record_end(job_id)  # a QUEUED job (or an idle one) ends at once
        return self.get(job_id)

    def events(self, job_id: str, after: int = 0, count: int = 1000) -> builtins.list[JobEvent]:
        """Events after sequence number `after` (no blocking)."""
        entries = cast(
            "builtins.list[StreamEntry]",
            self.redis.xrange(self.keys.events(job_id), min=f"({after}-0" if after else "-", count=count),
        )
        return [parse_event(entry_id, fields) for entry_id, fields in entries]

    # -- the worker side ------------------------------------------------------------------------------

    def start_page(self, job_id: str, url: str) -> str:
        """'run', or why the page must not run: 'missing', 'terminal', 'done' or 'cancelled'."""
        return self.begin_page(job_id, url)[0]

    def begin_page(self, job_id: str, url: str) -> tuple[str, dict[str, bytes]]:
        """`start_page`'s verdict and, when 'run', the job's hash as it is then (else {}): one round trip."""
        k = self.keys
        result = self._start_page(
            keys=k.ending(job_id), args=[time.time(), self.retention, self.keep_ms, url]
        )
        verdict = str(result[0].decode())
        if verdict == "cancelled":  # counted out: it may have been the job's last page
            self._record_end(job_id)
        flat = result[1] if len(result) > 1 else []
        return verdict, {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}

    def sweep_running(self, job_id: str) -> bool:
        """The job's last page asked for its sweep, which has not ended yet."""
        return self.redis.hget(self.keys.job(job_id), "sweep") == b"running"

    def outstanding(self, job_id: str, url: str) -> bool:
        """The job reserved `url` and has not counted its outcome yet (queued, running or put back)."""
        reserved, done = self.progress(job_id, url)
        return reserved and not done

    def progress(self, job_id: str, url: str) -> tuple[bool, bool]:
        """Whether the job reserved `url`, and whether it counted its outcome (one round trip)."""
        k = self.keys
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hexists(k.seen(job_id), url)
            pipe.sismember(k.done(job_id), url)
            reserved, done = pipe.execute()
        return bool(reserved), bool(done)

    def reserve_links(self, job_id: str, parent: str, urls: Sequence[str]) -> builtins.list[str]:
        if not urls:
            return []
        k = self.keys
        reserved, beyond = self._reserve_links(
            keys=[k.job(job_id), k.seen(job_id), k.beyond(job_id)], args=[parent, *urls]
        )
        if beyond:
            self.redis.hincrby(k.counters, "pages_beyond_max_pages", int(beyond))
        return [u.decode() for u in reserved]

    def unreached(self, job_id: str, urls: Sequence[str], *, batch: int = 1000) -> builtins.list[str]:
        """Those of `urls` the running job has not reserved (its seen-set), in their order."""
        missing: builtins.list[str] = []
        for start in range(0, len(urls), batch):
            part = list(urls[start : start + batch])
            owners = cast("builtins.list[bytes | None]", self.redis.hmget(self.keys.seen(job_id), part))
            missing += [url for url, owner in zip(part, owners, strict=True) if owner is None]
        return missing

    def claim_redirect(self, job_id: str, page: str, target: str) -> bool:
        """True when `page` may fetch `target` (it redirected there); False when the crawl has it already."""
        if target == page:
            return True
        owner = self._claim_url(
            keys=[self.keys.job(job_id), self.keys.seen(job_id)], args=[target, page]
        ).decode()
        return bool(owner == page)

    def claim_content(self, job_id: str, url: str, content_hash: str) -> str:
        keys = [self.keys.job(job_id), self.keys.hashes(job_id)]
        return str(self._claim_content(keys=keys, args=[content_hash, url]).decode())

    def finish_page(
        self,
        job_id: str,
        url: str,
        outcome: PageOutcome,
        detail: str = "",
        chunks: int = 0,
        *,
        is_seed: bool = False,
        may_sweep: bool = False,
    ) -> FinishResult:
        """Count the page's outcome once. With `may_sweep`, the last page of a crawl neither cancelled nor cut
        by max_pages does not end the job: the result's `sweep` tells the caller to send its sweep, which
        ends with `end_sweep`."""
        k = self.keys
        counted, final = self._finish_page(
            keys=k.ending(job_id),
            args=[
                time.time(),
                self.retention,
                self.keep_ms,
                url,
                outcome.value,
                detail[:500],
                chunks,
                "1" if is_seed else "0",
                "1" if may_sweep else "0",
            ],
        )
        if final == b"SWEEP":
            final, sweep = b"", True
        else:
            sweep = False
        if counted:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(k.counters, f"pages_{outcome.value}", 1)
                if outcome in (PageOutcome.ADDED, PageOutcome.UPDATED):  # written to the store, as before
                    pipe.hincrby(k.counters, "pages_indexed", 1)
                pipe.hincrby(k.counters, "chunks_indexed", chunks)
                pipe.execute()
        final_state = JobState(final.decode()) if final else None
        if final_state is not None:
            self._record_end(job_id)
        return FinishResult(counted=bool(counted), final_state=final_state, sweep=sweep)

    def end_sweep(self, job_id: str) -> JobState | None:
        """The job's sweep is done (its pages reserved and sent): the state it ended the job in, if it did."""
        final = self._end_sweep(
            keys=self.keys.ending(job_id), args=[time.time(), self.retention, self.keep_ms]
        )
        final_state = JobState(final.decode()) if final else None
        if final_state is not None:
            self._record_end(job_id)
        return final_state

    # -- figures for metrics, and what workers say they are doing --------------------------------------

    def counters(self) -> dict[str, int]:
        """Monotonic counters over every job ever run (they never go down when old jobs expire)."""
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.keys.counters))
        return {key.decode(): int(value) for key, value in raw.items()}

    def retained(self) -> int:
        """Jobs in the index: running ones and ended ones within the retention period (ghosts aside)."""
        return int(self.redis.zcard(self.keys.index))

    def workers_loading(self) -> int:
        """Workers that said they are loading the embedding model, and have not said otherwise or died."""
        return int(self.redis.zcount(self.keys.loading, f"({time.time()}", "+inf"))

    @contextlib.contextmanager
    def loading_model(self, worker: str, *, lease_seconds: float = 30.0) -> Iterator[None]:
        """Say that `worker` is loading the embedding model while the block runs.

        The mark is a lease renewed every third of `lease_seconds`, so a worker killed mid-load stops
        claiming it soon after; it is removed when the block ends."""
        key = self.keys.loading
        stop = threading.Event()

        def renew() -> None:
            self.redis.zadd(key, {worker: time.time() + lease_seconds})
            # (expired leases of other dead workers go too; the set holds only workers loading now)
            self.redis.zremrangebyscore(key, "-inf", time.time())

        with contextlib.suppress(redis.RedisError):  # (a mark that cannot be written must not stop the load)
            renew()

        def keep_renewing() -> None:
            while not stop.wait(lease_seconds / 3):
                with contextlib.suppress(redis.RedisError):
                    renew()

        renewer = threading.Thread(target=keep_renewing, name="loading-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with contextlib.suppress(redis.RedisError):
                self.redis.zrem(key, worker)
