"""WatchJob fan-out: one Redis reader per job per process, every watcher gets every event exactly once.

Against the real Redis, through the real gRPC server where the client's view matters.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis.asyncio

from ragcord.jobs import EventKind, JobStore, JobWatcher, PageOutcome
from ragcord.jobs.watcher import WatchLimitReached
from rpc.v1 import admin_pb2 as pb
from rpc.v1 import admin_pb2_grpc
from tests.harness import admin_api

SEED = "http://docs.example.com/docs/"


@pytest.fixture
def jobs(redis_client, key_prefix) -> JobStore:
    return JobStore(redis_client, prefix=key_prefix, retention=10_000)


@pytest.fixture
async def aredis(redis_url):
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def new_job(jobs: JobStore, pages: int = 100):
    return jobs.create(knowledge_base="docs", url=SEED, max_pages=pages + 1, max_depth=3)


def run_crawl(jobs: JobStore, job_id: str, pages: int) -> None:
    """A crawl of `pages` pages after the seed, as a worker writes it (an event per page)."""
    jobs.start_page(job_id, SEED)
    children = jobs.reserve_links(job_id, SEED, [f"{SEED}{i}" for i in range(pages)])
    jobs.finish_page(job_id, SEED, PageOutcome.INDEXED, chunks=1)
    for url in children:
        jobs.start_page(job_id, url)
        jobs.finish_page(job_id, url, PageOutcome.INDEXED, chunks=1)


def logged_ids(events) -> list[str]:
    return [e.event_id for e in events if e.event_id]


async def collect(watcher: JobWatcher, job_id: str, after: str = "", *, pause: float = 0.0) -> list:
    out = []
    async for event in watcher.watch(job_id, after):
        out.append(event)
        if pause and event.event_id:
            await asyncio.sleep(pause)  # a slow client
    return out


async def wait_until(condition, timeout: float = 30, tasks=()) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        failed = [t.exception() for t in tasks if t.done() and not t.cancelled()]
        raise AssertionError(f"not reached in {timeout}s; watches that ended: {failed[:3]}") from None


async def test_many_watchers_of_a_live_job_share_one_reader_and_each_gets_every_event_once(
    jobs, aredis, key_prefix
):
    watcher = JobWatcher(aredis, prefix=key_prefix, heartbeat_seconds=0.2, window_events=16)
    job = new_job(jobs)
    watches = [asyncio.create_task(collect(watcher, job.id)) for _ in range(300)]
    await wait_until(lambda: watcher.streams == 300 and watcher.feeds == 1)

    await asyncio.to_thread(run_crawl, jobs, job.id, 100)
    results = await asyncio.gather(*watches)

    expected = [e.event_id for e in jobs.events(job.id)]
    assert len(expected) > 16 * 5  # far more than a watcher's queue holds
    for events in results:
        assert events[0].kind is EventKind.SNAPSHOT
        assert logged_ids(events) == expected
        assert events[-1].terminal
    assert watcher.streams == 0 and watcher.feeds == 0


async def test_a_slow_watcher_catches_up_from_the_stream_without_holding_the_others_back(
    jobs, aredis, key_prefix
):
    watcher = JobWatcher(aredis, prefix=key_prefix, heartbeat_seconds=0.2, window_events=4)
    job = new_job(jobs)
    slow = asyncio.create_task(collect(watcher, job.id, pause=0.01))
    fast = [asyncio.create_task(collect(watcher, job.id)) for _ in range(5)]
    await wait_until(lambda: watcher.streams == 6)

    await asyncio.to_thread(run_crawl, jobs, job.id, 60)
    fast_results = await asyncio.gather(*fast)
    assert not slow.done()  # the others finished while the slow one was still reading
    slow_events = await slow

    expected = [e.event_id for e in jobs.events(job.id)]
    for events in [*fast_results, slow_events]:
        assert logged_ids(events) == expected


async def test_reconnecting_with_the_last_cursor_through_the_fan_out_repeats_and_misses_nothing(
    jobs, aredis, key_prefix
):
    watcher = JobWatcher(aredis, prefix=key_prefix, heartbeat_seconds=0.2, window_events=4)
    job = new_job(jobs)
    seen: list[str] = []
    crawl = None
    cursor = ""
    # The client drops after every 7 events and resumes from the last event id it saw, while the job runs.
    while True:
        events = []
        async for event in watcher.watch(job.id, cursor):
            events.append(event)
            if crawl is None and event.kind is EventKind.HEARTBEAT:
                crawl = asyncio.create_task(asyncio.to_thread(run_crawl, jobs, job.id, 40))
            if len(logged_ids(events)) == 7:
                break
        seen += logged_ids(events)
        if events[-1].terminal or (logged_ids(events) == [] and crawl is not None and crawl.done()):
            break
        cursor = seen[-1] if seen else cursor
    assert crawl is not None
    await crawl
    assert seen == [e.event_id for e in jobs.events(job.id)]
    assert watcher.feeds == 0


async def test_watchers_that_leave_stop_the_jobs_reader(jobs, aredis, key_prefix):
    watcher = JobWatcher(aredis, prefix=key_prefix, heartbeat_seconds=0.2)
    job = new_job(jobs)
    watches = [asyncio.create_task(collect(watcher, job.id)) for _ in range(10)]
    await wait_until(lambda: watcher.feeds == 1 and watcher.streams == 10, tasks=watches)
    for task in watches:
        task.cancel()
    await asyncio.gather(*watches, return_exceptions=True)
    assert watcher.feeds == 0 and watcher.streams == 0


async def test_past_the_stream_limit_a_watch_is_refused_with_a_message(jobs, aredis, key_prefix):
    watcher = JobWatcher(aredis, prefix=key_prefix, heartbeat_seconds=0.2, max_streams=3)
    job = new_job(jobs)
    watches = [asyncio.create_task(collect(watcher, job.id)) for _ in range(3)]
    await wait_until(lambda: watcher.streams == 3)
    with pytest.raises(WatchLimitReached, match="RAGCORD_WATCH_MAX_STREAMS"):
        await collect(watcher, job.id)
    for task in watches:
        task.cancel()
    await asyncio.gather(*watches, return_exceptions=True)


async def test_the_admin_api_refuses_streams_past_its_limit_with_resource_exhausted(make_settings, jobs):
    settings = make_settings(watch_max_streams=20, watch_heartbeat_seconds=0.5)
    async with admin_api(settings) as (stub, _):
        job = new_job(jobs)
        calls = [stub.WatchJob(pb.WatchJobRequest(job_id=job.id)) for _ in range(20)]
        for call in calls:
            assert (await call.read()).kind == pb.JOB_EVENT_KIND_SNAPSHOT  # each stream is being served
        refused = stub.WatchJob(pb.WatchJobRequest(job_id=job.id))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await refused.read()
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "RAGCORD_WATCH_MAX_STREAMS" in info.value.details()

        # The streams already open are not disturbed: they follow the job to its end.
        await asyncio.to_thread(run_crawl, jobs, job.id, 5)
        expected = [e.event_id for e in jobs.events(job.id)]
        for call in calls:
            ids = []
            while (message := await call.read()) is not grpc.aio.EOF:
                ids += [message.event_id] if message.event_id else []
            assert ids == expected


async def test_when_the_jobs_reader_loses_its_connection_watchers_resume_with_their_cursor(
    jobs, redis_url, redis_client, key_prefix
):
    name = f"fanout-{key_prefix}"  # only this test's connections are killed: others share the Redis
    client = redis.asyncio.Redis.from_url(redis_url, client_name=name)
    watcher = JobWatcher(client, prefix=key_prefix, heartbeat_seconds=0.2, window_events=8)
    job = new_job(jobs)
    failures = []

    async def watch_resuming() -> list[str]:
        seen: list[str] = []
        while True:
            try:
                async for event in watcher.watch(job.id, seen[-1] if seen else ""):
                    if event.event_id:
                        seen.append(event.event_id)
                    if event.terminal:
                        return seen
            except (redis.ConnectionError, OSError) as exc:  # what the API sends as UNAVAILABLE
                failures.append(exc)

    watches = [asyncio.create_task(watch_resuming()) for _ in range(20)]
    await wait_until(lambda: watcher.streams == 20 and watcher.feeds == 1, tasks=watches)
    crawl = asyncio.create_task(asyncio.to_thread(run_crawl, jobs, job.id, 40))
    killed = 0
    for _ in range(3):  # kill the reader's connection three times while the crawl runs
        await asyncio.sleep(0.1)
        for entry in redis_client.client_list():
            if entry.get("name") == name and entry.get("cmd") in ("xread", "xrange", "hgetall"):
                killed += redis_client.client_kill_filter(_id=entry["id"])
    await crawl
    results = await asyncio.gather(*watches)
    await client.aclose()

    expected = [e.event_id for e in jobs.events(job.id)]
    assert killed >= 1  # redis-py may retry the read itself, or the watchers hear the error and resume
    for seen in results:
        assert seen == expected


async def test_more_watched_jobs_than_blocked_reads_take_turns_and_all_are_served(jobs, aredis, key_prefix):
    watcher = JobWatcher(aredis, prefix=key_prefix, heartbeat_seconds=0.2, blocking_reads=2)
    started = [new_job(jobs) for _ in range(6)]
    watches = [asyncio.create_task(collect(watcher, job.id)) for job in started for _ in range(3)]
    await wait_until(lambda: watcher.streams == 18 and watcher.feeds == 6, tasks=watches)

    await asyncio.gather(*(asyncio.to_thread(run_crawl, jobs, job.id, 10) for job in started))
    results = await asyncio.gather(*watches)

    for index, events in enumerate(results):
        job = started[index // 3]
        assert logged_ids(events) == [e.event_id for e in jobs.events(job.id)]


async def test_streams_slower_than_the_crawl_get_every_event_and_never_hold_back_the_fast_ones(
    make_settings, jobs
):
    """Issue 19, part 6: hundreds of WatchJob streams on one server, some reading slower than the crawl writes
    (a few milliseconds an event) and some stalled outright until every fast stream has finished; the
    job's window is far smaller than its log, so the slow ones fall behind it and read the rest from Redis.
    Each stream must end OK with every event exactly once, in order, the terminal one last."""
    settings = make_settings(watch_queue_events=16, watch_heartbeat_seconds=0.5)
    per_channel, channels_count = 40, 4
    async with admin_api(settings) as (_, address):
        channels = [
            grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(channels_count)
        ]
        stubs = [admin_pb2_grpc.AdminServiceStub(channel) for channel in channels]
        job = new_job(jobs, pages=150)
        fast_done = asyncio.Event()
        snapshots = 0

        async def stream(index: int, kind: str) -> list[str]:
            nonlocal snapshots
            ids: list[str] = []
            call = stubs[index % channels_count].WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=300)
            async for message in call:
                if message.kind == pb.JOB_EVENT_KIND_SNAPSHOT:
                    snapshots += 1
                if not message.event_id:
                    continue
                ids.append(message.event_id)
                if kind == "stalled" and len(ids) == 1:
                    await fast_done.wait()  # reads nothing more until the fast streams have all ended
                elif kind == "slow":
                    await asyncio.sleep(0.005)
            assert await call.code() is grpc.StatusCode.OK
            return ids

        kinds = ["fast", "slow", "stalled"]
        total = per_channel * channels_count
        fast = [asyncio.create_task(stream(i, "fast")) for i in range(0, total, 3)]
        others = [asyncio.create_task(stream(i, kinds[i % 3])) for i in range(total) if i % 3]
        await wait_until(lambda: snapshots == total, tasks=[*fast, *others])

        await asyncio.to_thread(run_crawl, jobs, job.id, 150)
        fast_results = await asyncio.gather(*fast)  # would never end if they waited for the stalled ones
        fast_done.set()
        other_results = await asyncio.gather(*others)
        for channel in channels:
            await channel.close()

    expected = [e.event_id for e in jobs.events(job.id)]
    assert len(expected) > 16 * 5  # far more than the window holds
    assert jobs.get(job.id).state.terminal
    for ids in [*fast_results, *other_results]:
        assert ids == expected
