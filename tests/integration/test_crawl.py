"""Crawls of the fixture site through the admin API, with a real Dramatiq worker, Redis and LanceDB (and
SQLite where a case says so)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ragcord.urls import normalize_url
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api, running_worker
from tests.sitekit import FixtureSite

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
MANIFEST = json.loads((SITE / "manifest.json").read_text())
KIND = pb.JobEventKind.Name


@pytest.fixture
def site():
    with FixtureSite(root=SITE) as running:
        yield running


async def watch_to_end(stub, job_id: str, after: str = "") -> list:
    events = []
    async for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_event_id=after), timeout=120):
        events.append(event)
    return events


def outcomes(events) -> dict[str, tuple[str, str]]:
    return {
        e.page_url: (KIND(e.kind).removeprefix("JOB_EVENT_KIND_"), e.detail) for e in events if e.page_url
    }


async def test_a_crawl_indexes_the_site_and_reports_every_page(make_settings, site):
    settings = make_settings()
    with running_worker(settings, threads=4) as services:
        async with admin_api(settings, services) as (stub, _):
            job = await stub.StartCrawl(
                pb.StartCrawlRequest(url=site.url("/docs/"), knowledge_base="docs", max_pages=200)
            )
            events = await watch_to_end(stub, job.id)
            sources = await stub.ListSources(pb.ListSourcesRequest(knowledge_base="docs"))

    final = events[-1].job
    assert final.state == pb.JOB_STATE_SUCCEEDED, final.error
    assert KIND(events[0].kind) == "JOB_EVENT_KIND_SNAPSHOT"
    terminal = [e for e in events if e.kind == pb.JOB_EVENT_KIND_STATE_CHANGED and e.job.state >= 3]
    assert len(terminal) == 1 and terminal[0] is events[-1]
    assert final.pages_done + final.pages_skipped + final.pages_failed == final.pages_discovered

    pages = outcomes(events)
    indexed = {url for url, (kind, _) in pages.items() if kind == "PAGE_INDEXED"}
    duplicated = {p for pair in MANIFEST["duplicates"].items() for p in pair}
    for path in MANIFEST["indexable"]:
        if path not in duplicated:
            assert site.url(path) in indexed or site.url(path).removesuffix("index.html") in indexed, path
    for path in MANIFEST["robots_disallowed"]:
        assert pages[site.url(path)] == ("PAGE_SKIPPED", "disallowed by robots.txt")
        assert site.hits(path) == 0
    for path in MANIFEST["out_of_scope"]:
        assert site.hits(path) == 0, f"{path} is out of scope but was fetched"
    for dup, original in MANIFEST["duplicates"].items():
        # Whichever copy is read first is the original; the other is skipped as its duplicate.
        copies = {pages[site.url(p)][0]: (p, pages[site.url(p)][1]) for p in (dup, original)}
        assert set(copies) == {"PAGE_INDEXED", "PAGE_SKIPPED"}
        kept = copies["PAGE_INDEXED"][0]
        assert copies["PAGE_SKIPPED"][1] == f"duplicate of {site.url(kept)}"
    for dup, original in MANIFEST["query_duplicates"].items():
        if normalize_url(site.url(dup)) != site.url(original):  # (utm_ and highlight are dropped)
            # The plain URL is the one kept, whichever a worker reached first.
            assert pages[site.url(dup)] == ("PAGE_SKIPPED", f"duplicate of {site.url(original)}")
    for path, expected in MANIFEST["special"].items():
        kind, detail = pages[site.url(path)]
        if expected != "any":
            assert kind == f"PAGE_{expected.upper()}", (path, kind, detail)

    # Every HTML page was fetched at most a couple of times (retries of transient failures only).
    assert max(site.hits(p) for p in MANIFEST["indexable"]) == 1
    assert "redirects to" in pages[site.url("/docs/special/redirect-in.html")][1]
    stored = {s.url: s for s in sources.sources}
    assert set(stored) == indexed
    assert sum(s.chunk_count for s in stored.values()) == final.chunks_indexed


@pytest.mark.parametrize("store", ["lancedb", "sqlite"])
async def test_recrawling_replaces_chunks_instead_of_adding(make_settings, site, store):
    settings = make_settings(store=store)
    with running_worker(settings, threads=4) as services:
        async with admin_api(settings, services) as (stub, _):
            request = pb.StartCrawlRequest(
                url=site.url("/docs/"), knowledge_base="docs", max_pages=12, exclude_patterns=["/special/"]
            )
            first = (await watch_to_end(stub, (await stub.StartCrawl(request)).id))[-1].job
            count_after_first = services.store.count_chunks("docs")
            # (`full`: every page written again; an incremental crawl leaves unchanged pages alone)
            request.full = True
            second = (await watch_to_end(stub, (await stub.StartCrawl(request)).id))[-1].job
            count_after_second = services.store.count_chunks("docs")

            url = (await stub.ListSources(pb.ListSourcesRequest(knowledge_base="docs"))).sources[0].url
            detail = await stub.GetSource(pb.GetSourceRequest(knowledge_base="docs", url=url))
            deleted = await stub.DeleteSource(pb.DeleteSourceRequest(knowledge_base="docs", url=url))
            remaining = await stub.ListSources(pb.ListSourcesRequest(knowledge_base="docs"))

    assert first.chunks_indexed == second.chunks_indexed == count_after_first == count_after_second
    assert [c.index for c in detail.chunks] == list(range(detail.source.chunk_count))
    assert detail.text and detail.chunks[0].text in detail.text
    assert deleted.chunks_deleted == detail.source.chunk_count
    assert url not in {s.url for s in remaining.sources}


async def test_max_pages_is_never_exceeded(make_settings, site):
    settings = make_settings()
    with running_worker(settings, threads=4) as services:
        async with admin_api(settings, services) as (stub, _):
            job = await stub.StartCrawl(
                pb.StartCrawlRequest(url=site.url("/docs/"), knowledge_base="small", max_pages=5)
            )
            events = await watch_to_end(stub, job.id)
    assert all(e.job.pages_discovered <= 5 for e in events)
    final = events[-1].job
    assert final.pages_discovered == 5 and final.state == pb.JOB_STATE_SUCCEEDED
    html_fetched = [p for p in site.requests if p.startswith("/docs/") and not p.endswith("robots.txt")]
    assert len(html_fetched) <= 5


async def test_max_depth_limits_how_far_links_are_followed(make_settings, site):
    settings = make_settings()
    with running_worker(settings, threads=4) as services:
        async with admin_api(settings, services) as (stub, _):
            job = await stub.StartCrawl(
                pb.StartCrawlRequest(
                    url=site.url("/docs/"),
                    knowledge_base="shallow",
                    max_depth=1,
                    exclude_patterns=["/special/"],
                )
            )
            events = await watch_to_end(stub, job.id)
    for path in MANIFEST["depth2_only"]:
        assert site.hits(path) == 0
    assert events[-1].job.state == pb.JOB_STATE_SUCCEEDED


async def test_cancel_mid_crawl_lets_in_flight_pages_finish_and_ends_cancelled(make_settings):
    settings = make_settings()
    with FixtureSite(root=SITE, delay=0.3) as slow_site, running_worker(settings, threads=2) as services:
        async with admin_api(settings, services) as (stub, _):
            job = await stub.StartCrawl(
                pb.StartCrawlRequest(url=slow_site.url("/docs/"), knowledge_base="docs")
            )
            seen = []
            async for event in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=60):
                seen.append(event)
                if event.job.pages_done >= 3 and not any(e.job.cancel_requested for e in seen):
                    cancelled = await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))
                    assert cancelled.cancel_requested
            await asyncio.sleep(1.0)
            requests_after_end = len(slow_site.requests)
            await asyncio.sleep(1.0)
            final = await stub.GetJob(pb.GetJobRequest(job_id=job.id))
    assert final.state == pb.JOB_STATE_CANCELLED
    assert final.pages_done < len(MANIFEST["indexable"])
    assert sum(1 for e in seen if e.kind == pb.JOB_EVENT_KIND_STATE_CHANGED and e.job.state >= 3) == 1
    assert len(slow_site.requests) == requests_after_end  # nothing new starts
