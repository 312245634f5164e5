"""Politeness across workers: two real worker processes (as on two hosts) share each site's request limit,
its robots.txt Crawl-delay and the back-off a 429 asks for, through Redis; a slow site does not hold up
another crawl's pages.

The sites record what they see: requests in flight at once, and when each request arrived.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from ragcord.bootstrap import bootstrap
from ragcord.crawls import site_limit, start_crawl
from ragcord.errors import InvalidArgument
from ragcord.jobs.records import EventKind
from ragcord.settings import Settings
from rpc.v1 import admin_pb2 as pb
from tests.e2e.procs import Service
from tests.harness import admin_api, delete_prefixed_keys
from tests.sitekit import FixtureSite
from workers.enqueue import build_enqueue
from workers.pipeline import PageCrawler, _Deferred
from workers.politeness import Denied, Lease, SiteLimiter

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
WORKERS = 2
THREADS = 2


@pytest.fixture(scope="module")
def prefix(redis_url):
    prefix = f"test{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefixed_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def env(redis_url, prefix, tmp_path_factory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("politeness")
    return {
        "RAGCORD_REDIS_URL": redis_url,
        "RAGCORD_KEY_PREFIX": prefix,
        "RAGCORD_DATA_DIR": str(data / "data"),
        "RAGCORD_ALLOW_PRIVATE_NETWORKS": "true",
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_FETCH_TIMEOUT_SECONDS": "5",
        "RAGCORD_PAGE_RETRIES": "1",
        "RAGCORD_RETRY_BACKOFF_MS": "100",
        "RAGCORD_WORKER_PROCESSES": "1",
        "RAGCORD_WORKER_THREADS": str(THREADS),
        "RAGCORD_WORKER_METRICS_PORT": "0",
        "RAGCORD_METRICS_ADDRESS": "",
    }


@pytest.fixture(scope="module")
def workers(env, tmp_path_factory):
    """Two independent `ragcord worker` processes on one Redis."""
    logs = tmp_path_factory.mktemp("politeness-logs")
    services = [Service(["worker"], env, logs, logs / f"worker-{i}.log") for i in range(WORKERS)]
    yield services
    for service in services:
        service.stop()


@pytest.fixture(scope="module")
def cluster(env, workers):
    """(settings, services, crawl): `crawl(url, **request)` starts a crawl the worker processes run."""
    settings = Settings(
        _env_file=None,
        redis_url=env["RAGCORD_REDIS_URL"],
        key_prefix=env["RAGCORD_KEY_PREFIX"],
        data_dir=Path(env["RAGCORD_DATA_DIR"]),
        allow_private_networks=True,
        embedder="none",
    )
    services = bootstrap(settings)
    enqueue = build_enqueue(settings)

    def start(url: str, kb: str = "polite", **request):
        return start_crawl(settings, services.jobs, enqueue, url=url, knowledge_base=kb, **request)

    return settings, services, start


def wait_end(services, job, workers, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not (job := services.jobs.get(job.id)).state.terminal:
        for worker in workers:
            assert worker.alive(), worker.tail()
        assert time.monotonic() < deadline, f"crawl {job.id} did not end: {job}"
        time.sleep(0.1)
    return job


def outcomes(services, job) -> dict[str, tuple[str, str]]:
    return {
        e.page_url: (e.kind.value, e.detail)
        for e in services.jobs.events(job.id, count=10_000)
        if e.kind in (EventKind.PAGE_INDEXED, EventKind.PAGE_SKIPPED, EventKind.PAGE_FAILED)
    }


@pytest.mark.parametrize("limit", [1, 2])
def test_requests_in_flight_to_a_site_never_exceed_the_crawls_limit(limit, cluster, workers):
    _, services, start = cluster
    with FixtureSite(root=SITE, delay=0.2) as site:
        job = start(
            site.url("/docs/"), max_pages=16, exclude_patterns=["/special/"], max_concurrent_requests=limit
        )
        job = wait_end(services, job, workers)
        seen = site.max_in_flight
    assert job.state.value == "SUCCEEDED" and job.pages_done + job.pages_skipped == 16
    assert 1 <= seen <= limit
    print(f"max in flight {seen} of limit {limit}, {WORKERS} worker processes x {THREADS} threads")


def test_a_429_with_retry_after_is_retried_after_the_wait_and_indexed(cluster, workers):
    _, services, start = cluster
    with FixtureSite(root=SITE) as site:
        site.busy_replies, site.retry_after = 1, "1"
        job = wait_end(services, start(site.url("/hostile/busy.html"), max_pages=1), workers)
        asked = [at for at, target in site.arrivals if target == "/hostile/busy.html"]
    assert job.state.value == "SUCCEEDED"
    assert outcomes(services, job)[site.url("/hostile/busy.html")][0] == "PAGE_INDEXED"
    assert len(asked) == 2 and asked[1] - asked[0] >= 0.9  # Retry-After: 1, with slack for clocks
    print(f"429 Retry-After 1: retried after {asked[1] - asked[0]:.2f}s, indexed")


def test_the_robots_txt_crawl_delay_spaces_every_request_to_the_site(cluster, workers):
    _, services, start = cluster
    robots = b"User-agent: *\nCrawl-delay: 1\nDisallow: /docs/private/\n"
    with FixtureSite(root=SITE, robots=robots) as site:
        job = start(
            site.url("/docs/"), max_pages=5, exclude_patterns=["/special/"], max_concurrent_requests=4
        )
        job = wait_end(services, job, workers)
        arrivals = [at for at, _ in site.arrivals]
    assert job.state.value == "SUCCEEDED"
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # (the seed reads /sitemap.xml too: spaced like every other request)
    pages = [target for _, target in site.arrivals if target not in ("/robots.txt", "/sitemap.xml")]
    # robots.txt: once per worker process; /sitemap.xml once
    assert len(pages) == 5 and len(arrivals) - len(pages) <= WORKERS + 1
    assert min(gaps) >= 0.9, gaps  # Crawl-delay: 1, with slack for the two clocks
    print(f"Crawl-delay 1: smallest gap {min(gaps):.2f}s over {len(gaps)} gaps")


def test_a_slow_site_does_not_starve_another_crawl(cluster, workers):
    _, services, start = cluster
    # The slow site answers each request after 1 s and allows 2 at once: its 30 pages take 15 s at least,
    # however many threads wait for it. The other crawl's pages must not queue behind them.
    with FixtureSite(root=SITE, delay=1.0) as slow, FixtureSite(root=SITE) as fast:
        slow_job = start(slow.url("/docs/"), kb="slow", max_pages=30, max_concurrent_requests=2)
        deadline = time.monotonic() + 60
        # Its seed read, its other pages are queued ahead of the fast crawl's.
        while services.jobs.get(slow_job.id).pages_discovered < 30:
            assert time.monotonic() < deadline, "the slow crawl never got past its seed page"
            time.sleep(0.05)
        fast_job = wait_end(
            services,
            start(fast.url("/docs/"), kb="fast", max_pages=20, exclude_patterns=["/special/"]),
            workers,
        )
        slow_then = services.jobs.get(slow_job.id)
        slow_job = wait_end(services, slow_job, workers)
    assert fast_job.state.value == "SUCCEEDED" and fast_job.pages_done + fast_job.pages_skipped == 20
    assert not slow_then.state.terminal, "the slow crawl ended first: the test proves nothing"
    assert slow_job.state.terminal and slow.max_in_flight <= 2
    done = slow_then.pages_done + slow_then.pages_skipped + slow_then.pages_failed
    print(
        f"slow crawl {slow_job.finished_at - slow_job.started_at:.1f}s, max in flight {slow.max_in_flight}; "
        f"fast crawl (20 pages) ended while the slow one had {done} of 30 pages done, "
        f"{slow_then.outstanding} outstanding"
    )


def test_the_limit_is_validated(cluster):
    settings, _, start = cluster
    for bad in (-1, 33, 1000):
        with pytest.raises(InvalidArgument, match="max_concurrent_requests must be between 1 and 32"):
            start("http://127.0.0.1:9/docs/", max_concurrent_requests=bad)


async def test_start_crawl_takes_the_limit_and_refuses_one_out_of_range(make_settings):
    settings = make_settings()
    services = bootstrap(settings)

    def request(**options):
        return pb.StartCrawlRequest(url="http://127.0.0.1:9/docs/", knowledge_base="x", **options)

    async with admin_api(settings, services) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.StartCrawl(request(max_concurrent_requests=33))
        job = await stub.StartCrawl(request(max_concurrent_requests=3))
        await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))  # one crawl into a knowledge base at once
        default = await stub.StartCrawl(request())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_concurrent_requests must be between 1 and 32" in refused.value.details()
    assert site_limit(services.jobs, job.id, default=99) == 3
    assert site_limit(services.jobs, default.id, default=99) == settings.max_concurrent_requests == 2


def test_a_dead_workers_slot_frees_itself_when_its_lease_expires(redis_client, key_prefix):
    dead = SiteLimiter(redis_client, prefix=key_prefix, lease_ms=300, keep_alive=False)
    alive = SiteLimiter(redis_client, prefix=key_prefix, lease_ms=300)
    site = "http://docs.example.test"
    held = dead.try_acquire(site, limit=1)
    assert isinstance(held, Lease)  # ...and its worker dies without releasing it (nothing renews it)
    busy = alive.try_acquire(site, limit=1, waiter="job page")
    assert isinstance(busy, Denied) and busy.wait_ms is None and busy.back_ms > 0
    time.sleep(0.4)
    assert isinstance(alive.try_acquire(site, limit=1), Lease)


def test_a_live_worker_renews_its_slots_and_never_revives_a_released_one(redis_client, key_prefix):
    limiter = SiteLimiter(redis_client, prefix=key_prefix, lease_ms=60_000, keep_alive=False)
    site = "http://docs.example.test"
    leases = limiter._keys(site)[0]
    first, second = limiter.try_acquire(site, limit=2), limiter.try_acquire(site, limit=2)
    assert isinstance(first, Lease) and isinstance(second, Lease)
    seconds, micros = redis_client.time()
    now_ms = seconds * 1000 + micros // 1000
    redis_client.zadd(leases, {first.token: now_ms + 1000}, xx=True)  # as if it had a second left
    limiter.release(second)
    assert limiter.renew_held() == 1
    assert redis_client.zscore(leases, first.token) >= now_ms + 59_000  # renewed to now + 60 s
    assert redis_client.zscore(leases, second.token) is None  # released stays released


def test_retry_after_and_crawl_delay_close_the_sites_gate_for_every_worker(redis_client, key_prefix):
    first = SiteLimiter(redis_client, prefix=key_prefix, lease_ms=10_000)
    other = SiteLimiter(redis_client, prefix=key_prefix, lease_ms=10_000)  # another worker, same Redis
    site = "http://docs.example.test"
    lease = first.try_acquire(site, limit=4)
    assert isinstance(lease, Lease)
    first.release(lease, backoff_ms=5_000)  # the site answered 429, Retry-After: 5
    closed = other.try_acquire(site, limit=4)
    assert isinstance(closed, Denied) and 4_000 < closed.wait_ms <= 5_000
    elsewhere = other.try_acquire("http://other.example.test", limit=4)
    assert isinstance(elsewhere, Lease)  # other sites are not held back
    other.release(elsewhere, delay_ms=3_000)  # its robots.txt says Crawl-delay: 3
    spaced = first.try_acquire("http://other.example.test", limit=4)
    assert isinstance(spaced, Denied) and 2_000 < spaced.wait_ms <= 3_000


def _page_crawler(limiter: SiteLimiter, busy_wait: float) -> PageCrawler:
    """A PageCrawler that only takes site slots (nothing else is called) and puts pages back."""
    settings = Settings(_env_file=None, site_busy_wait_seconds=busy_wait)
    fake: Any = None
    return PageCrawler(
        settings,
        jobs=fake,
        store=fake,
        embedder=fake,
        fetcher=fake,
        robots=fake,
        enqueue=fake,
        limiter=limiter,
        defer=lambda *args: None,
    )


def test_a_slot_that_frees_within_the_busy_wait_is_taken_without_putting_the_page_back(
    redis_client, key_prefix
):
    other = SiteLimiter(redis_client, prefix=key_prefix, keep_alive=False)  # another worker's request
    site = "http://fast.example.test"
    held = other.try_acquire(site, limit=1)
    assert isinstance(held, Lease)
    threading.Timer(0.02, other.release, args=(held,)).start()  # a fast site answers in milliseconds
    crawler = _page_crawler(SiteLimiter(redis_client, prefix=key_prefix, keep_alive=False), busy_wait=1.0)
    lease = crawler._acquire(site, 1, "job page", None)
    assert isinstance(lease, Lease)


def test_a_site_busy_past_the_busy_wait_puts_the_page_back(redis_client, key_prefix):
    other = SiteLimiter(redis_client, prefix=key_prefix, keep_alive=False)
    site = "http://slow.example.test"
    assert isinstance(other.try_acquire(site, limit=1), Lease)  # held throughout
    crawler = _page_crawler(SiteLimiter(redis_client, prefix=key_prefix, keep_alive=False), busy_wait=0.05)
    started = time.monotonic()
    with pytest.raises(_Deferred) as deferred:
        crawler._acquire(site, 1, "job page", None)
    assert 0.04 <= time.monotonic() - started < 1.0
    assert deferred.value.delay_ms >= 100  # when the site's waiters say (acquire.lua's floor)
