"""What Redis keeps of crawl jobs and Discord threads, and how long, against the real Redis: an ended job's
keys go together after the retention period, a running one keeps them all, the indexes stay as large as what
is kept, and the Prometheus counters never go down."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ragcord.bootstrap import bootstrap
from ragcord.errors import NotFound
from ragcord.feedback import FeedbackStore
from ragcord.jobs import JobState, JobStore, PageOutcome
from ragcord.knowledge.copies import CopyIndex
from ragcord.metrics import JobsCollector
from ragcord.settings import Settings
from ragcord.threads import OwnedThreads
from rpc.server import serve
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api, free_port

SEED = "http://docs.example.com/docs/"
KEEP_SECONDS = 1.0
LONG_TEXT = " ".join(f"word{i}" for i in range(40))  # long enough for the copy index to fingerprint


def wait_until(condition, timeout: float = 60) -> None:
    """Poll until `condition()` holds; the bound only keeps a broken build from hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def jobs(redis_client, key_prefix) -> JobStore:
    return JobStore(redis_client, prefix=key_prefix, retention=1000, keep_seconds=KEEP_SECONDS)


def run_to_the_end(jobs: JobStore, redis_client, key_prefix: str) -> str:
    """A job that touched every per-job key (seen, done, hashes, beyond, copy index), run to SUCCEEDED."""
    job = jobs.create(knowledge_base="docs", url=SEED, max_pages=2, max_depth=3)
    assert jobs.start_page(job.id, SEED) == "run"
    assert jobs.reserve_links(job.id, SEED, [SEED + "a", SEED + "b"]) == [SEED + "a"]  # b: over max_pages
    assert jobs.claim_redirect(job.id, SEED, SEED + "moved")
    assert jobs.claim_content(job.id, SEED, "hash-1") == SEED
    CopyIndex(redis_client, prefix=key_prefix).claim(job.id, SEED, [LONG_TEXT], [0])
    jobs.finish_page(job.id, SEED, PageOutcome.INDEXED, "Home", 2, is_seed=True)
    assert jobs.start_page(job.id, SEED + "a") == "run"
    assert (
        jobs.finish_page(job.id, SEED + "a", PageOutcome.INDEXED, chunks=1).final_state is JobState.SUCCEEDED
    )
    return job.id


def test_an_ended_job_keeps_record_and_events_for_the_retention_then_every_key_goes_together(
    jobs, redis_client, key_prefix
):
    running = jobs.create(knowledge_base="docs", url=SEED, max_pages=5, max_depth=3)
    jobs.start_page(running.id, SEED)
    jobs.reserve_links(running.id, SEED, [SEED + "x"])
    jobs.claim_content(running.id, SEED, "hash-r")
    running_keys = [key for key in jobs.keys.all_of(running.id) if redis_client.exists(key)]
    ended = run_to_the_end(jobs, redis_client, key_prefix)
    k = jobs.keys

    # Right after the end: what GetJob and WatchJob read is there, expiring at one instant; scratch is gone.
    assert jobs.get(ended).state is JobState.SUCCEEDED and len(jobs.events(ended)) == 5
    record, events = (redis_client.pexpiretime(key) for key in k.retained(ended))
    assert record == events > 0
    assert [key for key in k.scratch(ended) if redis_client.exists(key)] == []
    # A running job keeps all its keys, none expiring.
    assert {k.job(running.id), k.events(running.id), k.seen(running.id), k.hashes(running.id)} <= set(
        running_keys
    )
    assert [redis_client.ttl(key) for key in running_keys] == [-1] * len(running_keys)
    assert [j.id for j in jobs.active()] == [running.id]

    wait_until(lambda: not redis_client.exists(k.job(ended)))
    assert [key for key in k.all_of(ended) if redis_client.exists(key)] == []
    with pytest.raises(NotFound, match="RAGCORD_JOB_RETENTION_DAYS"):
        jobs.get(ended)
    # ListJobs shows no ghost, and the index lets go of the expired job.
    listed, token = jobs.list()
    assert [j.id for j in listed] == [running.id] and token == ""
    assert redis_client.zscore(k.index, ended) is None
    # The running job still has every key, none expiring, however long it runs.
    assert [redis_client.ttl(key) for key in running_keys] == [-1] * len(running_keys)


def test_new_jobs_trim_the_index_of_expired_jobs_even_when_nobody_lists(jobs, redis_client, key_prefix):
    ended = [run_to_the_end(jobs, redis_client, key_prefix) for _ in range(3)]
    assert redis_client.zcard(jobs.keys.index) == 3
    wait_until(lambda: not any(redis_client.exists(jobs.keys.job(job_id)) for job_id in ended))
    fresh = jobs.create(knowledge_base="docs", url=SEED, max_pages=5, max_depth=3)
    assert [m.decode() for m in redis_client.zrange(jobs.keys.index, 0, -1)] == [fresh.id]
    assert redis_client.zcard(jobs.keys.expiring) == 0
    assert [m.decode() for m in redis_client.zrange(jobs.keys.active, 0, -1)] == [fresh.id]


def test_jobs_that_ended_before_retention_existed_get_their_expiry_from_when_they_ended(
    jobs, redis_client, key_prefix
):
    k = jobs.keys
    old, recent = (run_to_the_end(jobs, redis_client, key_prefix) for _ in range(2))
    running = jobs.create(knowledge_base="docs", url=SEED, max_pages=5, max_depth=3)
    jobs.start_page(running.id, SEED)
    # As an older ragcord left them: ended, no expiry, not in the expiring index, a scratch key kept.
    for job_id, ended_ago in ((old, 3600.0), (recent, 0.0)):
        for key in k.retained(job_id):
            redis_client.persist(key)
        redis_client.zrem(k.expiring, job_id)
        redis_client.hset(k.job(job_id), "finished_at", time.time() - ended_ago)
        redis_client.hset(k.seen(job_id), SEED, "")

    assert jobs.expire_unexpiring() == 2
    assert jobs.expire_unexpiring() == 0  # idempotent: the API runs it at every start
    # The one that ended an hour ago (retention 1 s here) expires at once; the other about a second later.
    assert all(not redis_client.exists(key) or redis_client.pttl(key) <= 1 for key in k.retained(old))
    assert all(0 < redis_client.pttl(key) <= KEEP_SECONDS * 1000 for key in k.retained(recent))
    assert [key for job_id in (old, recent) for key in k.scratch(job_id) if redis_client.exists(key)] == []
    assert {m.decode() for m in redis_client.zrange(k.expiring, 0, -1)} == {old, recent}
    # The running job is left alone.
    assert [redis_client.ttl(key) for key in k.retained(running.id)] == [-1, -1]
    wait_until(lambda: not any(redis_client.exists(key) for j in (old, recent) for key in k.all_of(j)))
    assert [j.id for j in jobs.list()[0]] == [running.id]


async def test_the_admin_api_gives_old_ended_jobs_their_expiry_when_it_starts(make_settings):
    settings: Settings = make_settings(grpc_address=f"127.0.0.1:{free_port()}", metrics_address="")
    services = bootstrap(settings)
    ended = run_to_the_end(services.jobs, services.redis, settings.key_prefix)
    for key in services.jobs.keys.retained(ended):
        services.redis.persist(key)
    services.redis.zrem(services.jobs.keys.expiring, ended)
    ready = asyncio.Event()
    server = asyncio.create_task(serve(settings, ready=ready, services=services))
    try:
        await asyncio.wait_for(ready.wait(), 120)
        assert all(services.redis.pttl(key) > 0 for key in services.jobs.keys.retained(ended))
        assert services.redis.zscore(services.jobs.keys.expiring, ended) is not None
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        services.close()


def test_a_cancelled_queued_job_and_a_failed_one_expire_too(jobs, redis_client):
    queued = jobs.create(knowledge_base="docs", url=SEED, max_pages=5, max_depth=3)
    assert jobs.cancel(queued.id).state is JobState.CANCELLED
    failed = jobs.create(knowledge_base="docs", url=SEED, max_pages=5, max_depth=3)
    jobs.start_page(failed.id, SEED)
    assert jobs.finish_page(failed.id, SEED, PageOutcome.FAILED, "HTTP 500", is_seed=True).final_state is (
        JobState.FAILED
    )
    for job_id in (queued.id, failed.id):
        assert all(redis_client.pexpiretime(key) > 0 for key in jobs.keys.retained(job_id))
    assert jobs.active() == []
    # A straggler (a message delivered twice) after the end recreates no scratch key without a TTL.
    assert jobs.start_page(failed.id, SEED) == "terminal"
    assert jobs.reserve_links(failed.id, SEED, [SEED + "late"]) == []
    assert jobs.claim_content(failed.id, SEED, "late-hash") == SEED
    assert not jobs.claim_redirect(failed.id, SEED, SEED + "late-redirect")
    assert [key for key in jobs.keys.scratch(failed.id) if redis_client.exists(key)] == []


async def test_get_job_of_an_expired_job_is_not_found_and_says_why(make_settings):
    settings: Settings = make_settings()
    services = bootstrap(settings)
    services.jobs = JobStore(
        services.redis, prefix=settings.key_prefix, retention=100, keep_seconds=KEEP_SECONDS
    )
    ended = run_to_the_end(services.jobs, services.redis, settings.key_prefix)
    async with admin_api(settings, services) as (stub, _):
        assert (await stub.GetJob(pb.GetJobRequest(job_id=ended))).state == pb.JOB_STATE_SUCCEEDED
        wait_until(lambda: not services.redis.exists(services.jobs.keys.job(ended)))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetJob(pb.GetJobRequest(job_id=ended))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert ended in caught.value.details() and "RAGCORD_JOB_RETENTION_DAYS" in caught.value.details()
        assert list((await stub.ListJobs(pb.ListJobsRequest())).jobs) == []
    services.close()


def scrape(jobs: JobStore) -> dict[str, float]:
    """The collector's figures as Prometheus exposes them (`name{labels}` -> value), and its types."""
    registry = CollectorRegistry()
    registry.register(JobsCollector(jobs))
    figures = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            figures[f"TYPE {name}"] = kind
        elif line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            figures[name] = float(value)
    return figures


def test_the_page_counters_never_go_down_when_old_jobs_expire(jobs, redis_client, key_prefix):
    first = run_to_the_end(jobs, redis_client, key_prefix)
    before = scrape(jobs)
    assert before["TYPE ragcord_pages_total"] == "counter"
    assert before['ragcord_pages_total{outcome="indexed"}'] == 2
    assert before["ragcord_chunks_indexed_total"] == 3
    assert before["ragcord_pages_beyond_max_pages_total"] == 1
    assert before['ragcord_jobs_finished_total{state="succeeded"}'] == 1

    wait_until(lambda: not redis_client.exists(jobs.keys.job(first)))
    running = jobs.create(knowledge_base="docs", url=SEED, max_pages=5, max_depth=3)
    after = scrape(jobs)
    assert after['ragcord_pages_total{outcome="indexed"}'] == 2  # the job is gone, its pages still count
    assert after["ragcord_chunks_indexed_total"] == 3
    assert after["ragcord_jobs_created_total"] == 2
    assert after["TYPE ragcord_jobs"] == "gauge"
    assert after['ragcord_jobs{state="queued"}'] == 1 and after['ragcord_jobs{state="running"}'] == 0
    assert after["ragcord_pages_outstanding"] == 1
    assert after["ragcord_jobs_retained"] == 1

    jobs.start_page(running.id, SEED)
    jobs.finish_page(running.id, SEED, PageOutcome.SKIPPED, "disallowed by robots.txt", is_seed=True)
    last = scrape(jobs)
    assert last['ragcord_pages_total{outcome="indexed"}'] == 2
    assert last['ragcord_pages_total{outcome="skipped"}'] == 1
    assert last['ragcord_jobs_finished_total{state="failed"}'] == 1
    assert last['ragcord_jobs{state="queued"}'] == 0


def test_owned_threads_unused_for_the_bound_are_forgotten_and_used_ones_kept(redis_client, key_prefix):
    threads = OwnedThreads(redis_client, prefix=key_prefix, keep_seconds=100)
    # Owned before uses were recorded (an older release): its bound starts at the next add.
    redis_client.hset(threads.key, "1", "legacy")
    threads.add(2, "2", now=1000)
    threads.add(3, "3", now=1000)
    assert threads.conversation_of(3, now=1090) == "3"  # a use keeps the thread
    threads.add(4, "4", now=1150)  # 2 and the legacy 1 were last used at 1000: more than 100 s ago
    assert threads.conversation_of(1, now=1150) is None
    assert threads.conversation_of(2, now=1150) is None
    assert threads.conversation_of(3, now=1150) == "3"
    assert threads.conversation_of(4, now=1150) == "4"
    assert redis_client.hlen(threads.key) == redis_client.zcard(threads.used_key) == 2
    threads.remove(3)
    assert redis_client.hlen(threads.key) == redis_client.zcard(threads.used_key) == 1


def test_the_job_keys_name_the_copy_index_keys_the_way_the_copy_index_does(jobs, redis_client, key_prefix):
    assert jobs.keys.copy_index("j1") == CopyIndex(redis_client, prefix=key_prefix).keys("j1")


def test_votes_expire_with_their_answer_and_the_feedback_log_lets_go_of_expired_answers(
    redis_client, key_prefix
):
    store = FeedbackStore(redis_client, prefix=key_prefix, ttl_seconds=100)
    log_key = f"{key_prefix}:feedback:log"
    redis_client.zadd(log_key, {"long-gone": time.time() - 1000, "just-gone": time.time()})
    store.record_answer("a1", question="q", answer="t", cited_urls=["https://d/x"], knowledge_base="docs")
    store.vote("a1", "u1", "up")
    answer, votes = (
        redis_client.pexpiretime(f"{key_prefix}:answers:a1{suffix}") for suffix in ("", ":votes")
    )
    assert answer == votes > 0
    # The vote trimmed what is older than any answer kept; a listing drops the expired one it meets.
    assert [r.answer_id for r in store.list()] == ["a1"]
    assert [m.decode() for m in redis_client.zrange(log_key, 0, -1)] == ["a1"]
