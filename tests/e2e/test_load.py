"""Load on one admin API process: hundreds to thousands of WatchJob streams, and 50 crawls at once.

Real `ragcord rpc` and `ragcord worker` processes on the real Redis, the fixture site on loopback, grpc.aio
clients in this process (many channels, each its own connection, 50 streams on each). Prints the figures
that docs/reliability.md quotes (run with -s to see them):

    .venv/bin/python -m pytest tests/e2e/test_load.py -m slow -s -q
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import grpc
import pytest
import redis

from ragcord.jobs.store import JobStore
from rpc.v1 import admin_pb2 as pb
from rpc.v1 import admin_pb2_grpc
from tests.e2e.conftest import SITE
from tests.e2e.procs import Grpcurl, Service, wait_healthy
from tests.harness import free_port
from tests.sitekit import FixtureSite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
STREAMS_PER_CHANNEL = 50
EXCLUDE = ["/special/"]


@pytest.fixture(scope="module")
def cluster(base_env, workdir):
    """`ragcord rpc` and one `ragcord worker` of 2 processes; yields (address, rpc service)."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        **base_env,
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_WORKER_PROCESSES": "2",
        "RAGCORD_WORKER_THREADS": "2",
        "RAGCORD_DATA_DIR": str(workdir / "load-data"),
    }
    rpc = Service(["rpc"], env, workdir, workdir / "load-rpc.log")
    workers = Service(["worker"], env, workdir, workdir / "load-worker.log")
    try:
        wait_healthy(Grpcurl(address), rpc)
        yield address, rpc
    finally:
        for service in (rpc, workers):
            service.stop()


@pytest.fixture(scope="module")
def jobs(redis_url, e2e_prefix):
    client = redis.Redis.from_url(redis_url)
    yield JobStore(client, prefix=e2e_prefix, retention=10_000)
    client.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Channels:
    """Client channels, each its own connection (no shared subchannel), STREAMS_PER_CHANNEL streams each."""

    def __init__(self, address: str, streams: int) -> None:
        count = -(-streams // STREAMS_PER_CHANNEL)
        self.channels = [
            grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(count)
        ]
        self.stubs = [admin_pb2_grpc.AdminServiceStub(c) for c in self.channels]

    def stub(self, index: int) -> admin_pb2_grpc.AdminServiceStub:
        return self.stubs[index // STREAMS_PER_CHANNEL]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels))


async def watch(stub, job_id: str, delays: list[float]) -> list[str]:
    """Every logged event id of the job until its terminal event; live events' delays into `delays`."""
    ids: list[str] = []
    joined = None
    async for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=600):
        now = time.time()
        if joined is None:
            joined = now  # the snapshot: events written after it arrive live
        if event.event_id:
            ids.append(event.event_id)
            at = event.at.ToMicroseconds() / 1e6
            if at > joined:
                delays.append(now - at)
        if event.job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED) and (
            event.event_id
        ):
            break
    return ids


async def sample_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak.append(rss_mb(pid))
        await asyncio.sleep(0.2)


async def watched_crawls(address: str, rpc: Service, jobs: JobStore, *, crawls: int, streams: int) -> dict:
    """Start `crawls` crawls of the slowed fixture site and watch them with `streams` streams in all."""
    pid = rpc.proc.pid
    before = rss_mb(pid)
    channels = Channels(address, streams)
    delays: list[float] = []
    peak: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, peak, stop))
    with FixtureSite(root=SITE, delay=0.3) as site:
        started = [
            await channels.stubs[0].StartCrawl(
                pb.StartCrawlRequest(
                    url=site.url("/docs/"),
                    knowledge_base=f"load{i}-{time.time_ns()}",
                    exclude_patterns=EXCLUDE,
                )
            )
            for i in range(crawls)
        ]
        job_of = [started[i % crawls].id for i in range(streams)]
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(watch(channels.stub(i), job_of[i], delays) for i in range(streams)), return_exceptions=True
        )
        elapsed = time.monotonic() - t0
    stop.set()
    await sampler
    await channels.close()
    await asyncio.sleep(1)
    after = rss_mb(pid)
    errors = [r for r in results if isinstance(r, BaseException)]
    expected = {job.id: [e.event_id for e in jobs.events(job.id)] for job in started}
    served = sum(
        1 for i, r in enumerate(results) if not isinstance(r, BaseException) and r == expected[job_of[i]]
    )
    figures = {
        "streams": streams,
        "crawls": crawls,
        "served": served,
        "errors": [repr(e)[:200] for e in errors[:3]],
        "events_per_job": sorted({len(v) for v in expected.values()}),
        "live_events": len(delays),
        "delay_p50_ms": round(percentile(delays, 0.5) * 1000, 1),
        "delay_p99_ms": round(percentile(delays, 0.99) * 1000, 1),
        "delay_mean_ms": round(statistics.fmean(delays) * 1000, 1) if delays else None,
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(max(peak, default=before), 1),
        "rss_after_mb": round(after, 1),
        "seconds": round(elapsed, 1),
    }
    print(f"\n[load] {figures}")
    return figures


async def test_500_streams_on_one_server_all_receive_every_event_of_a_running_crawl(cluster, jobs):
    address, rpc = cluster
    figures = await watched_crawls(address, rpc, jobs, crawls=1, streams=500)
    assert figures["errors"] == []
    assert figures["served"] == 500
    assert figures["events_per_job"][0] > 20
    assert rpc.alive()


async def test_2000_streams_over_10_jobs_are_all_served(cluster, jobs):
    address, rpc = cluster
    figures = await watched_crawls(address, rpc, jobs, crawls=10, streams=2000)
    assert figures["errors"] == []
    assert figures["served"] == 2000
    assert rpc.alive()


async def test_50_crawls_queued_at_once_over_2_worker_processes_all_finish_with_every_page(cluster, jobs):
    address, _ = cluster
    async with grpc.aio.insecure_channel(address) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        with FixtureSite(root=SITE) as site:

            def request(kb: str) -> pb.StartCrawlRequest:
                return pb.StartCrawlRequest(
                    url=site.url("/docs/"), knowledge_base=kb, exclude_patterns=EXCLUDE
                )

            reference = await stub.StartCrawl(request(f"loadref-{time.time_ns()}"))
            reference = await finished(stub, [reference.id])
            pages = reference[0].pages_done
            assert pages > 10 and reference[0].state == pb.JOB_STATE_SUCCEEDED

            t0 = time.monotonic()
            started = await asyncio.gather(
                *(stub.StartCrawl(request(f"load50-{i}-{time.time_ns()}")) for i in range(50))
            )
            done = await finished(stub, [job.id for job in started])
            elapsed = time.monotonic() - t0
    print(
        f"\n[load] 50 crawls x {pages} pages over 2 worker processes: {elapsed:.1f} s, "
        f"{50 * pages / elapsed:.1f} pages/s"
    )
    assert [job.state for job in done] == [pb.JOB_STATE_SUCCEEDED] * 50
    assert [job.pages_done for job in done] == [pages] * 50
    assert [job.pages_failed for job in done] == [0] * 50


async def finished(stub, job_ids: list[str], timeout: float = 900) -> list:
    deadline = time.monotonic() + timeout
    while True:
        current = [await stub.GetJob(pb.GetJobRequest(job_id=job_id)) for job_id in job_ids]
        if all(
            job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
            for job in current
        ):
            return current
        assert time.monotonic() < deadline, f"not finished after {timeout}s: {current}"
        await asyncio.sleep(1)
