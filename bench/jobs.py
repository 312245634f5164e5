"""Listing 1000 jobs (ListJobs, and the Prometheus scrape that reads the same jobs): one HGETALL per job
against the pipelined batches JobStore.list uses, in one run so the ratio holds on a noisy machine."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import redis

from bench import command_line
from ragcord.jobs import JobStore

REDIS_URL = os.environ.get("RAGCORD_REDIS_URL", "redis://127.0.0.1:6379/0")
JOBS = 1000


def best_ms(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def run(plots: Path) -> tuple[str, str]:
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    jobs = JobStore(client, prefix=prefix, retention=100)
    try:
        for i in range(JOBS):
            jobs.create(knowledge_base="kb", url=f"https://docs.example.com/{i}/", max_pages=10, max_depth=2)

        def one_by_one() -> list:
            ids = client.zrevrange(jobs.keys.index, 0, JOBS - 1)
            return [jobs.get(raw.decode()) for raw in ids]

        def pipelined() -> list:
            return jobs.list(page_size=JOBS)[0]

        assert [j.id for j in one_by_one()] == [j.id for j in pipelined()]
        before, now = best_ms(one_by_one), best_ms(pipelined)
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    markdown = (
        f"## Admin API: listing {JOBS} jobs ({time.strftime('%Y-%m-%d')}, `python -m bench.jobs`)\n\n"
        "Both ways in one run, best of 7, local Redis:\n\n"
        "| | ms |\n|---|---|\n"
        f"| one HGETALL per job | {before:.1f} |\n"
        f"| pipelined batches (`JobStore.list`, what ListJobs and the metrics scrape use) | {now:.1f} |\n\n"
        f"{before / now:.1f}x faster.\n"
    )
    return markdown, f"jobs: list_{JOBS}_ms={now:.1f} speedup={before / now:.2f}"


if __name__ == "__main__":
    command_line("python -m bench.jobs", __doc__, run)
