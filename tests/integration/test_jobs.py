"""The job record, counters and event log against the real Redis."""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis.asyncio

from ragcord.errors import FailedPrecondition, NotFound, OutOfRange
from ragcord.jobs import EventKind, JobState, JobStore, JobWatcher, PageOutcome

SEED = "http://docs.example.com/docs/"


@pytest.fixture
def jobs(redis_client, key_prefix) -> JobStore:
    return JobStore(redis_client, prefix=key_prefix, retention=1000)


def new_job(jobs: JobStore, **kw):
    values = dict(knowledge_base="docs", url=SEED, max_pages=10, max_depth=3)
    values.update(kw)
    return jobs.create(**values)


def kinds(events):
    return [(e.kind.value, e.detail) for e in events]


def test_a_page_that_may_run_gets_the_job_as_it_is_then_in_the_same_call(jobs):
    job = new_job(jobs, max_pages=7)
    jobs.redis.hset(jobs.keys.job(job.id), "max_concurrent_requests", 3)  # StartCrawl's own site limit

    verdict, record = jobs.begin_page(job.id, SEED)

    assert verdict == "run"
    assert record["state"] == b"RUNNING"  # the change this very call made
    assert record["max_pages"] == b"7" and record["max_concurrent_requests"] == b"3"
    jobs.finish_page(job.id, SEED, PageOutcome.INDEXED, "Home", 1, is_seed=True)
    assert jobs.begin_page(job.id, SEED) == ("terminal", {})
    assert jobs.begin_page("nope", SEED) == ("missing", {})


def test_a_crawl_runs_to_one_terminal_event(jobs):
    job = new_job(jobs)
    assert job.state is JobState.QUEUED and job.pages_discovered == 1

    assert jobs.start_page(job.id, SEED) == "run"
    children = jobs.reserve_links(job.id, SEED, [SEED + "a", SEED + "b"])
    assert children == [SEED + "a", SEED + "b"]
    assert jobs.finish_page(job.id, SEED, PageOutcome.INDEXED, "Home", 3, is_seed=True).final_state is None
    for url in children:
        assert jobs.start_page(job.id, url) == "run"
    jobs.finish_page(job.id, SEED + "a", PageOutcome.SKIPPED, "disallowed by robots.txt")
    last = jobs.finish_page(job.id, SEED + "b", PageOutcome.FAILED, "HTTP 404")

    assert last.final_state is JobState.SUCCEEDED
    job = jobs.get(job.id)
    assert (job.pages_discovered, job.pages_done, job.pages_skipped, job.pages_failed) == (3, 1, 1, 1)
    assert job.chunks_indexed == 3 and job.finished_at >= job.started_at >= job.created_at
    events = jobs.events(job.id)
    assert [e.event_id for e in events] == [str(i) for i in range(1, 7)]
    assert kinds(events) == [
        ("STATE_CHANGED", "queued"),
        ("STATE_CHANGED", "running"),
        ("PAGE_INDEXED", "Home"),
        ("PAGE_SKIPPED", "disallowed by robots.txt"),
        ("PAGE_FAILED", "HTTP 404"),
        ("STATE_CHANGED", "succeeded"),
    ]
    assert sum(e.terminal for e in events) == 1
    assert events[2].job.pages_done == 1 and events[2].page_url == SEED


def test_a_redelivered_page_counts_once_and_reserves_the_same_children(jobs):
    job = new_job(jobs)
    jobs.start_page(job.id, SEED)
    first = jobs.reserve_links(job.id, SEED, [SEED + "a", SEED + "b"])
    # The worker died before finishing; the message comes back.
    assert jobs.start_page(job.id, SEED) == "run"
    again = jobs.reserve_links(job.id, SEED, [SEED + "a", SEED + "b", SEED + "c"])
    assert again == [SEED + "a", SEED + "b", SEED + "c"]
    assert first == again[:2]
    assert jobs.finish_page(job.id, SEED, PageOutcome.INDEXED, chunks=2).counted
    assert not jobs.finish_page(job.id, SEED, PageOutcome.INDEXED, chunks=2).counted
    assert jobs.start_page(job.id, SEED) == "done"
    job = jobs.get(job.id)
    assert (job.pages_discovered, job.pages_done, job.chunks_indexed) == (4, 1, 2)
    # Another page linking to the same urls reserves none of them.
    assert jobs.reserve_links(job.id, SEED + "a", [SEED + "b", SEED]) == []


def test_reservations_never_exceed_max_pages_under_contention(jobs):
    job = new_job(jobs, max_pages=25)
    jobs.start_page(job.id, SEED)
    reserved: list[str] = []
    lock = threading.Lock()

    def reserve(worker: int) -> None:
        got = jobs.reserve_links(job.id, f"{SEED}parent{worker}", [f"{SEED}p{i}" for i in range(100)])
        with lock:
            reserved.extend(got)

    threads = [threading.Thread(target=reserve, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reserved) == len(set(reserved)) == 24
    assert jobs.get(job.id).pages_discovered == 25


def test_a_failed_seed_fails_the_job_with_its_reason(jobs):
    job = new_job(jobs)
    jobs.start_page(job.id, SEED)
    result = jobs.finish_page(job.id, SEED, PageOutcome.FAILED, "HTTP 404", is_seed=True)
    assert result.final_state is JobState.FAILED
    assert jobs.get(job.id).error == "no page could be indexed: the seed page failed: HTTP 404"


def test_cancelling_a_queued_job_ends_it_at_once(jobs):
    job = new_job(jobs)
    assert jobs.cancel(job.id).state is JobState.CANCELLED
    assert jobs.start_page(job.id, SEED) == "terminal"
    with pytest.raises(FailedPrecondition, match="already ended CANCELLED"):
        jobs.cancel(job.id)
    assert sum(e.terminal for e in jobs.events(job.id)) == 1


def test_cancelling_a_running_job_lets_in_flight_pages_finish(jobs):
    job = new_job(jobs)
    jobs.start_page(job.id, SEED)
    jobs.reserve_links(job.id, SEED, [SEED + "a", SEED + "b"])
    jobs.finish_page(job.id, SEED, PageOutcome.INDEXED, chunks=1)
    assert jobs.start_page(job.id, SEED + "a") == "run"  # in flight

    job = jobs.cancel(job.id)
    assert job.state is JobState.RUNNING and job.cancel_requested
    assert jobs.reserve_links(job.id, SEED + "a", [SEED + "c"]) == []  # nothing new is discovered
    assert jobs.start_page(job.id, SEED + "b") == "cancelled"  # nothing new starts
    assert jobs.get(job.id).state is JobState.RUNNING
    assert (
        jobs.finish_page(job.id, SEED + "a", PageOutcome.INDEXED, chunks=2).final_state is JobState.CANCELLED
    )
    job = jobs.get(job.id)
    assert (job.pages_done, job.chunks_indexed) == (2, 3)
    assert sum(e.terminal for e in jobs.events(job.id)) == 1


def test_unknown_jobs_are_not_found(jobs):
    with pytest.raises(NotFound):
        jobs.get("nope")
    with pytest.raises(NotFound):
        jobs.cancel("nope")


def test_list_is_newest_first_filtered_and_paged(jobs):
    created = [new_job(jobs, knowledge_base="a" if i % 2 else "b") for i in range(7)]
    jobs.cancel(created[0].id)
    all_ids = [j.id for j in reversed(created)]

    page1, token = jobs.list(page_size=3)
    page2, token2 = jobs.list(page_size=3, page_token=token)
    page3, token3 = jobs.list(page_size=3, page_token=token2)
    assert [j.id for j in page1 + page2 + page3] == all_ids and token3 == ""
    only_a, _ = jobs.list(knowledge_base="a")
    assert [j.id for j in only_a] == [j.id for j in reversed(created) if j.knowledge_base == "a"]
    cancelled, _ = jobs.list(state=JobState.CANCELLED)
    assert [j.id for j in cancelled] == [created[0].id]


def test_claim_content_keeps_the_first_owner(jobs):
    job = new_job(jobs)
    assert jobs.claim_content(job.id, SEED + "a", "h1") == SEED + "a"
    assert jobs.claim_content(job.id, SEED + "b", "h1") == SEED + "a"
    assert jobs.claim_content(job.id, SEED + "a", "h1") == SEED + "a"


# -- watching -----------------------------------------------------------------------------------------


async def collect(watcher: JobWatcher, job_id: str, after: str = "", limit: int = 100):
    out = []
    async for event in watcher.watch(job_id, after):
        out.append(event)
        if len(out) >= limit:
            break
    return out


@pytest.fixture
async def watcher(redis_url, key_prefix):
    client = redis.asyncio.Redis.from_url(redis_url)
    yield JobWatcher(client, prefix=key_prefix, heartbeat_seconds=0.2)
    await client.aclose()


def run_small_crawl(jobs: JobStore, job_id: str, pages: int = 3) -> None:
    jobs.start_page(job_id, SEED)
    children = jobs.reserve_links(job_id, SEED, [f"{SEED}{i}" for i in range(pages - 1)])
    jobs.finish_page(job_id, SEED, PageOutcome.INDEXED, chunks=1)
    for url in children:
        jobs.start_page(job_id, url)
        jobs.finish_page(job_id, url, PageOutcome.INDEXED, chunks=1)


async def test_watch_sends_a_snapshot_then_the_log_and_ends_after_the_terminal_event(jobs, watcher):
    job = new_job(jobs)
    run_small_crawl(jobs, job.id)
    events = await collect(watcher, job.id)
    assert events[0].kind is EventKind.SNAPSHOT and events[0].event_id == ""
    assert [e.event_id for e in events[1:]] == [str(i) for i in range(1, 7)]
    assert events[-1].terminal and events[-1].job.state is JobState.SUCCEEDED


async def test_watch_follows_a_live_job_with_heartbeats(jobs, watcher):
    job = new_job(jobs)
    events = []
    async for event in watcher.watch(job.id):
        events.append(event)
        if event.kind is EventKind.HEARTBEAT and not any(e.kind is EventKind.HEARTBEAT for e in events[:-1]):
            # the watcher idled with a heartbeat after the job's first event; only now does the job move
            await asyncio.to_thread(run_small_crawl, jobs, job.id)
        if event.terminal or len(events) >= 100:
            break
    assert [(e.kind, e.event_id) for e in events[:3]] == [
        (EventKind.SNAPSHOT, ""),
        (EventKind.STATE_CHANGED, "1"),
        (EventKind.HEARTBEAT, ""),
    ]
    logged = [e for e in events if e.event_id]
    assert [e.event_id for e in logged] == [str(i) for i in range(1, 7)]
    assert events[-1].terminal


async def test_reconnecting_with_a_cursor_misses_nothing_and_repeats_nothing(jobs, watcher):
    job = new_job(jobs)
    run_small_crawl(jobs, job.id, pages=5)
    first = await collect(watcher, job.id, limit=4)  # snapshot + events 1..3, then the client drops
    cursor = first[-1].event_id
    rest = await collect(watcher, job.id, after=cursor)
    ids = [e.event_id for e in first + rest if e.event_id]
    assert ids == [str(i) for i in range(1, len(ids) + 1)]
    assert rest[-1].terminal
    # Two watchers see the same sequence.
    again = await collect(watcher, job.id)
    assert [e.event_id for e in again] == [e.event_id for e in await collect(watcher, job.id)]
    # A finished job watched from its end: just the snapshot.
    tail = await collect(watcher, job.id, after=ids[-1])
    assert [e.kind for e in tail] == [EventKind.SNAPSHOT]


async def test_a_cursor_that_fell_out_of_retention_is_out_of_range(redis_client, key_prefix, watcher):
    jobs = JobStore(redis_client, prefix=key_prefix, retention=3)
    job = new_job(jobs)
    run_small_crawl(jobs, job.id, pages=4)  # 7 events, 5..7 kept
    with pytest.raises(OutOfRange, match="no longer retained"):
        await collect(watcher, job.id, after="1")
    with pytest.raises(OutOfRange, match="no longer retained"):
        await collect(watcher, job.id)
    kept = await collect(watcher, job.id, after="4")
    assert [e.event_id for e in kept[1:]] == ["5", "6", "7"]
    with pytest.raises(OutOfRange, match="after the job's last event"):
        await collect(watcher, job.id, after="99")
