"""A worker process SIGKILLed mid-crawl: the other takes over its messages and the job ends as a clean
run would, with exactly one terminal event."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import SITE, TOKEN
from tests.e2e.procs import Grpcurl, Service, wait_healthy
from tests.harness import free_port
from tests.sitekit import FixtureSite

pytestmark = pytest.mark.e2e
MANIFEST = json.loads((SITE / "manifest.json").read_text())
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}


@pytest.fixture
def cluster(base_env, workdir):
    """The admin API and two independent worker processes on one Redis, as on two hosts."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        **base_env,
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_ADMIN_TOKEN": TOKEN,
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_WORKER_PROCESSES": "1",
        "RAGCORD_WORKER_THREADS": "2",
        "RAGCORD_WORKER_HEARTBEAT_TIMEOUT_MS": "3000",
        "RAGCORD_BROKER_MAINTENANCE_CHANCE": "1000000",
        "RAGCORD_DATA_DIR": str(workdir / "crash-data"),
    }
    rpc = Service(["rpc"], env, workdir, workdir / "crash-rpc.log")
    workers = [Service(["worker"], env, workdir, workdir / f"crash-worker-{i}.log") for i in range(2)]
    grpcurl = Grpcurl(address, TOKEN)
    try:
        wait_healthy(grpcurl, rpc)
        yield grpcurl, workers, lambda name: Service(["worker"], env, workdir, workdir / f"crash-{name}.log")
    finally:
        for service in [rpc, *workers]:
            service.stop()


def crawl(grpcurl: Grpcurl, url: str, kb: str, *, when_busy=None) -> tuple[dict, list[dict]]:
    (job,) = grpcurl.call("StartCrawl", {"url": url, "knowledge_base": kb, "exclude_patterns": ["/special/"]})
    if when_busy is not None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            (current,) = grpcurl.call("GetJob", {"job_id": job["id"]})
            if int(current.get("pages_done", 0)) >= 4:
                break
            time.sleep(0.1)
        assert current["state"] == "JOB_STATE_RUNNING", "the crawl ended before the worker could be killed"
        when_busy()
    events = grpcurl.call("WatchJob", {"job_id": job["id"]}, timeout=240)
    return events[-1]["job"], events


def stored(sources: dict) -> set[tuple[str, int, str]]:
    canonical = {dup: original for dup, original in MANIFEST["duplicates"].items()}
    return {
        (canonical.get(urlsplit(s["url"]).path, urlsplit(s["url"]).path), s["chunk_count"], s["content_hash"])
        for s in sources["sources"]
    }


def test_a_killed_worker_loses_nothing(cluster):
    grpcurl, workers, start_worker = cluster
    with FixtureSite(root=SITE, delay=0.2) as site:
        seed = site.url("/docs/")
        clean, _ = crawl(grpcurl, seed, "clean")
        (clean_sources,) = grpcurl.call("ListSources", {"knowledge_base": "clean"})

        # Worker A alone takes the crawl's first pages (and prefetches more), then B joins and A dies:
        # whatever A held unacknowledged can only finish if the broker hands it to B.
        workers[1].stop()

        def a_dies_with_b_running() -> None:
            workers.append(start_worker("b"))
            workers[0].kill_all()

        crashed, events = crawl(grpcurl, seed, "crash", when_busy=a_dies_with_b_running)
        (crash_sources,) = grpcurl.call("ListSources", {"knowledge_base": "crash"})

    assert not workers[0].alive() and workers[-1].alive()
    assert clean["state"] == crashed["state"] == "JOB_STATE_SUCCEEDED"
    for field in ("pages_discovered", "pages_done", "pages_skipped", "pages_failed", "chunks_indexed"):
        assert crashed.get(field) == clean.get(field), field
    # The same pages and chunks; of two identical pages, either may be the one kept.
    assert stored(crash_sources) == stored(clean_sources)
    terminal = [
        e for e in events if e["kind"] == "JOB_EVENT_KIND_STATE_CHANGED" and e["job"]["state"] in TERMINAL
    ]
    assert len(terminal) == 1
    page_events = [e["page_url"] for e in events if e.get("page_url")]
    assert len(page_events) == len(set(page_events))  # every page reported once
