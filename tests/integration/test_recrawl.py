"""Incremental re-crawls (issue 22): a loopback site edited between two crawls into one knowledge base."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Sequence

import grpc
import pytest

from cli.main import main
from ragcord.bootstrap import bootstrap
from ragcord.knowledge.embedders import NoEmbedder
from ragcord.knowledge.pages import PageRecords
from rpc.v1 import admin_pb2 as pb
from tests.fresh_site import FreshSite, Page, html
from tests.harness import admin_api, free_port, running_worker
from tests.integration.test_cli_jobs import cli_env, serving  # noqa: F401 - cli_env is a fixture

KB = "fresh"
WORDS = {
    "a": "Alpaca routing tables keep every request on its shard",
    "b": "Bison queues retry failed deliveries three times",
    "c": "Caracal caches expire after ninety seconds",
    "d": "Dingo tokens are signed with a rotating key",
    "e": "Egret exports write newline separated records",
    "f": "Falcon filters drop messages larger than a megabyte",
    "g": "Gecko gateways translate between both protocols",
}
VALIDATOR = {"a": "etag", "b": "etag", "c": "last-modified", "d": "last-modified"}


class CountingEmbedder(NoEmbedder):
    """The keyword-only embedder, remembering every text it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += list(texts)
        return super().embed(texts)


def page(name: str, text: str | None = None) -> Page:
    body = html(f"Page {name.upper()}", (text or WORDS[name] + ". ") * 8)
    return Page(body, VALIDATOR.get(name, "none"))


def index(links: list[str]) -> Page:
    return Page(html("Index", "The index of the fresh test site lists every page. " * 4, links))


@pytest.fixture
def site():
    with FreshSite() as running:
        for name in "abcdef":
            running.set(f"/docs/{name}.html", page(name))
        running.set("/docs/", index([f"{n}.html" for n in "abcdef"]))
        yield running


async def crawl(stub, url: str, **request) -> pb.Job:
    job = await stub.StartCrawl(pb.StartCrawlRequest(url=url, knowledge_base=KB, max_pages=50, **request))
    last = None
    async for event in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=120):
        last = event
    assert last is not None
    return last.job


async def show(stub, site: FreshSite, name: str) -> pb.SourceDetail:
    return await stub.GetSource(pb.GetSourceRequest(knowledge_base=KB, url=site.url(f"/docs/{name}.html")))


async def sources(stub) -> dict[str, pb.Source]:
    listed = await stub.ListSources(pb.ListSourcesRequest(knowledge_base=KB))
    return {s.url: s for s in listed.sources}


async def test_a_recrawl_touches_only_what_changed(make_settings, site):
    settings = make_settings()
    embedder = CountingEmbedder()
    services = bootstrap(settings, embedder=embedder)
    with running_worker(settings, services, threads=2):
        async with admin_api(settings, services) as (stub, _):
            first = await crawl(stub, site.url("/docs/"))
            assert first.state == pb.JOB_STATE_SUCCEEDED, first.error
            assert (first.pages_added, first.pages_done, first.pages_unchanged) == (7, 7, 0)
            before = await sources(stub)
            shown_before = await show(stub, site, "a")

            # The site changes: b's text, c gone (404, and no longer linked: only the sweep reaches it), d
            # gone for good (410), g new and linked from the index.
            site.set("/docs/b.html", page("b", "Bison queues now retry failed deliveries five times"))
            site.set("/docs/c.html", Page(b"", status=404))
            site.set("/docs/d.html", Page(b"", status=410))
            site.set("/docs/g.html", page("g"))
            site.set("/docs/", index([f"{n}.html" for n in "abdefg"]))
            site.forget_requests()
            embedder.texts.clear()

            second = await crawl(stub, site.url("/docs/"))
            after = await sources(stub)
            shown = await show(stub, site, "a")
            answers = [
                await stub.Ask(pb.AskRequest(question=question, knowledge_base=KB))
                for question in ("How are dingo tokens signed?", "When do caracal caches expire?")
            ]

    assert second.state == pb.JOB_STATE_SUCCEEDED, second.error
    counts = (second.pages_updated, second.pages_added, second.pages_unchanged, second.pages_removed)
    # b; g; the index (its new link is no content: the record's links are), a, e, f; c and d.
    assert counts == (1, 1, 4, 2)
    assert second.pages_done == 8 and second.pages_failed == 0
    # Only the changed and new pages were embedded.
    embedded = "\n".join(embedder.texts)
    assert embedder.texts and len(embedder.texts) == second.chunks_indexed
    for name in "aef":
        assert WORDS[name] not in embedded, name
    assert "five times" in embedded and WORDS["g"] in embedded
    # Unchanged pages keep their chunks' indexed_at; the changed one has a new one.
    for name in "aef":
        url = site.url(f"/docs/{name}.html")
        assert after[url].indexed_at == before[url].indexed_at, name
    assert shown.indexed_at == shown_before.indexed_at and shown.changed_at == shown_before.changed_at
    assert shown.fetched_at.ToNanoseconds() > shown_before.fetched_at.ToNanoseconds()
    assert after[site.url("/docs/b.html")].indexed_at != before[site.url("/docs/b.html")].indexed_at
    # Every page with a validator was asked for conditionally.
    for name, validator in VALIDATOR.items():
        requests = site.requests_of(f"/docs/{name}.html")
        assert requests, name
        header = "if_none_match" if validator == "etag" else "if_modified_since"
        assert all(getattr(r, header) for r in requests), (name, requests)
    assert [r.status for r in site.requests_of("/docs/a.html")] == [304]
    assert not any(r.conditional for n in "ef" for r in site.requests_of(f"/docs/{n}.html"))
    # Removed pages are gone from the listing and from answers.
    assert site.url("/docs/c.html") not in after and site.url("/docs/d.html") not in after
    assert site.url("/docs/g.html") in after and len(after) == 6
    for reply in answers:
        cited = {c.url.split("#")[0] for c in reply.citations}
        assert not cited & {site.url("/docs/c.html"), site.url("/docs/d.html")}, reply
    # The content viewer shows what the crawls recorded.
    assert shown.etag == site.pages["/docs/a.html"].etag and shown.fetched_at.seconds
    assert shown.changed_at.ToNanoseconds() <= shown.fetched_at.ToNanoseconds()
    assert shown.chunks and shown.chunks[0].heading


async def test_a_full_crawl_reindexes_every_page_and_a_cancelled_one_removes_nothing_unreached(
    make_settings, site
):
    settings = make_settings()
    embedder = CountingEmbedder()
    services = bootstrap(settings, embedder=embedder)
    with running_worker(settings, services, threads=2):
        async with admin_api(settings, services) as (stub, _):
            await crawl(stub, site.url("/docs/"))
            embedder.texts.clear()
            full = await crawl(stub, site.url("/docs/"), full=True)
            # max_pages cuts the next crawl: the pages it did not reach are neither fetched nor removed.
            site.set("/docs/f.html", Page(b"", status=404))
            site.forget_requests()
            job = await stub.StartCrawl(
                pb.StartCrawlRequest(url=site.url("/docs/"), knowledge_base=KB, max_pages=3)
            )
            async for event in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=120):
                cut = event.job
            await asyncio.sleep(0)
            listed = await sources(stub)

    assert full.pages_updated == 7 and full.pages_unchanged == 0 and full.full
    assert len(embedder.texts) == full.chunks_indexed
    assert cut.pages_beyond_max_pages > 0 and cut.pages_removed == 0
    assert len(listed) == 7


# -- sitemaps ----------------------------------------------------------------------------------------------

SITEMAP_NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def with_sitemaps(site: FreshSite) -> None:
    """robots.txt names a gzip sitemap index whose sitemap lists two pages no page links to."""
    hidden = "".join(
        f"<url><loc>{site.url(path)}</loc><lastmod>2026-01-0{i + 1}</lastmod></url>"
        for i, path in enumerate(("/docs/hidden-1.html", "/docs/hidden-2.html", "/elsewhere/out.html"))
    )
    site.set(
        "/maps/pages.xml", Page(f"<urlset {SITEMAP_NS}>{hidden}</urlset>".encode(), content_type="text/xml")
    )
    sitemap_index = f"<sitemapindex {SITEMAP_NS}><sitemap><loc>{site.url('/maps/pages.xml')}</loc></sitemap>"
    site.set(
        "/maps/index.xml.gz",
        Page(gzip.compress((sitemap_index + "</sitemapindex>").encode()), content_type="application/gzip"),
    )
    robots = f"User-agent: *\nAllow: /\nSitemap: {site.url('/maps/index.xml.gz')}\n"
    site.set("/robots.txt", Page(robots.encode(), content_type="text/plain"))
    for n in (1, 2):
        site.set(f"/docs/hidden-{n}.html", page("g", f"Hidden page {n} is listed in the sitemap only"))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (pb.SITEMAP_MODE_UNSPECIFIED, {"", "a", "b", "c", "d", "e", "f", "hidden-1", "hidden-2"}),
        (pb.SITEMAP_MODE_ONLY, {"", "hidden-1", "hidden-2"}),
        (pb.SITEMAP_MODE_SKIP, {"", "a", "b", "c", "d", "e", "f"}),
    ],
)
async def test_sitemaps_seed_the_crawl_as_the_mode_says(make_settings, site, mode, expected):
    with_sitemaps(site)
    settings = make_settings()
    with running_worker(settings, threads=2) as services:
        async with admin_api(settings, services) as (stub, _):
            job = await crawl(stub, site.url("/docs/"), sitemap=mode)
            listed = await sources(stub)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error
    names = {url.removeprefix(site.url("/docs/")).removesuffix(".html") for url in listed}
    assert names == expected
    assert not site.requests_of("/elsewhere/out.html")
    assert bool(site.requests_of("/maps/pages.xml")) == (mode != pb.SITEMAP_MODE_SKIP)


async def test_hostile_sitemaps_are_refused_and_the_crawl_goes_on(make_settings, site):
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><urlset><url><loc>&c;</loc></url></urlset>"""
    site.set("/sitemap.xml", Page(bomb, content_type="text/xml"))
    huge = b"<urlset>" + b"<url><loc>x</loc></url>" * 300_000 + b"</urlset>"  # over 6 MB: over the page cap
    site.set("/huge.xml", Page(huge, content_type="text/xml"))
    site.set("/bomb.xml.gz", Page(gzip.compress(b" " * (64 * 1024 * 1024)), content_type="application/gzip"))
    robots = f"User-agent: *\nSitemap: {site.url('/huge.xml')}\nSitemap: {site.url('/bomb.xml.gz')}\n"
    site.set("/robots.txt", Page(robots.encode(), content_type="text/plain"))
    settings = make_settings()
    with running_worker(settings, threads=2) as services:
        async with admin_api(settings, services) as (stub, _):
            job = await crawl(stub, site.url("/docs/"))
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.pages_added == 7 and job.pages_failed == 0
    assert site.requests_of("/sitemap.xml") and site.requests_of("/bomb.xml.gz")


async def test_a_transient_failure_keeps_the_page_and_deleting_forgets_the_records(make_settings, site):
    settings = make_settings()
    services = bootstrap(settings)
    records = PageRecords(services.redis, prefix=settings.key_prefix)
    async with admin_api(settings, services) as (stub, _):
        with running_worker(settings, services, threads=2):
            await crawl(stub, site.url("/docs/"))
            site.set("/docs/e.html", Page(b"", status=503))
            job = await stub.StartCrawl(pb.StartCrawlRequest(url=site.url("/docs/"), knowledge_base=KB))
            events = [e async for e in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=120)]
        # (the worker stopped: it optimizes the table after the job's end, which a drop must not race)
        kept = await sources(stub)
        e_url = site.url("/docs/e.html")
        await stub.DeleteSource(pb.DeleteSourceRequest(knowledge_base=KB, url=e_url))
        e_record = records.get(KB, e_url)
        left = records.count(KB)
        await stub.DeleteKnowledgeBase(pb.DeleteKnowledgeBaseRequest(knowledge_base=KB))
    final = events[-1].job
    assert final.state == pb.JOB_STATE_SUCCEEDED and final.pages_failed == 1 and final.pages_unchanged == 6
    (failed,) = [e for e in events if e.kind == pb.JOB_EVENT_KIND_PAGE_FAILED]
    assert failed.page_url == e_url and "HTTP 503" in failed.detail and "kept (stale)" in failed.detail
    assert e_url in kept
    assert e_record is None and left == 6
    assert records.count(KB) == 0


async def test_the_cli_shows_the_changes_and_a_page_with_its_dates_validators_and_sections(
    cli_env,  # noqa: F811 - the fixture imported above
    capsys,
    site,
):
    settings = cli_env
    services = bootstrap(settings)
    address = f"127.0.0.1:{free_port()}"
    crawl_args = ["crawl", site.url("/docs/"), "--kb", KB, "--watch", "--address", address]
    with running_worker(settings, services, threads=2):
        async with serving(settings, services, address):
            assert await asyncio.to_thread(main, crawl_args) == 0
            capsys.readouterr()
            site.set("/docs/b.html", page("b", "Bison queues now retry failed deliveries five times"))
            site.set("/docs/f.html", Page(b"", status=410))
            assert await asyncio.to_thread(main, crawl_args) == 0
            summary = capsys.readouterr().out
            show = ["sources", "--kb", KB, "--show", site.url("/docs/a.html"), "--address", address]
            assert await asyncio.to_thread(main, show) == 0
            shown = capsys.readouterr().out
    services.close()
    assert "7 done (1 updated, 5 unchanged, 1 removed), 0 skipped, 0 failed, 1 chunks" in summary, summary
    assert f"removed {site.url('/docs/f.html')}: HTTP 410: removed from the knowledge base" in summary
    etag = site.pages["/docs/a.html"].etag
    for label in ("fetched", "changed", "indexed", "ETag", "content hash"):
        assert label in shown, shown
    assert etag in shown and "Last-Modified" not in shown  # a's site sends an ETag only
    assert "#0 Page A" in shown and WORDS["a"] in shown


async def test_an_unknown_sitemap_mode_is_refused_with_the_modes(make_settings, site):
    settings = make_settings()
    async with admin_api(settings) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.StartCrawl(pb.StartCrawlRequest(url=site.url("/docs/"), knowledge_base=KB, sitemap=9))
        listed = await stub.ListJobs(pb.ListJobsRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "SITEMAP_MODE_INCLUDE, SITEMAP_MODE_ONLY or SITEMAP_MODE_SKIP" in info.value.details()
    assert not listed.jobs  # nothing half-written


async def test_a_copy_of_a_page_that_answers_304_stays_a_duplicate_in_the_recrawl(make_settings):
    """The job's duplicate check sees a 304 page's text too: its copy under another URL is not added."""
    settings = make_settings()
    services = bootstrap(settings, embedder=CountingEmbedder())
    with FreshSite() as site:
        body = html("Page A", WORDS["a"] * 8, ["copy.html"])
        site.set("/docs/a.html", Page(body, "etag"))
        site.set("/docs/copy.html", Page(body.replace(b'href="copy.html"', b'href="a.html"')))
        site.set("/docs/", index(["a.html"]))
        with running_worker(settings, services, threads=2):
            async with admin_api(settings, services) as (stub, _):
                first = await crawl(stub, site.url("/docs/"))
                before = await sources(stub)
                second = await crawl(stub, site.url("/docs/"))
                after = await sources(stub)

    assert first.pages_skipped == 1 and second.pages_skipped == 1  # copy.html: a duplicate both times
    assert second.pages_unchanged == 2 and second.pages_added == 0
    assert [r.status for r in site.requests_of("/docs/a.html")] == [200, 304]
    assert sorted(after) == sorted(before) and site.url("/docs/copy.html") not in after


async def test_a_site_moved_to_another_host_is_indexed_under_its_new_address(make_settings, site):
    """The same pages under another host (the site moved) are not duplicates of the old host's copies: the
    knowledge base's copy keeps its place only within the crawl's own scope."""
    settings = make_settings()
    services = bootstrap(settings, embedder=CountingEmbedder())
    with FreshSite() as moved:
        for name in "abcdef":
            moved.set(f"/docs/{name}.html", page(name))
        moved.set("/docs/", index([f"{n}.html" for n in "abcdef"]))
        with running_worker(settings, services, threads=2):
            async with admin_api(settings, services) as (stub, _):
                await crawl(stub, site.url("/docs/"))
                second = await crawl(stub, moved.url("/docs/"))
                listed = await sources(stub)

    assert second.state == pb.JOB_STATE_SUCCEEDED, second.error
    assert (second.pages_added, second.pages_skipped) == (7, 0)
    assert moved.url("/docs/a.html") in listed and site.url("/docs/a.html") in listed


async def test_the_knowledge_bases_copy_keeps_its_place_when_a_recrawl_reaches_its_twin_first(make_settings):
    settings = make_settings()
    services = bootstrap(settings, embedder=CountingEmbedder())
    with FreshSite() as site:
        body = html("Page A", WORDS["a"] * 8)
        site.set("/docs/a.html", Page(body, "etag"))
        site.set("/docs/twin.html", Page(body))
        site.set("/docs/", index(["a.html"]))
        with running_worker(settings, services, threads=2):
            async with admin_api(settings, services) as (stub, _):
                await crawl(stub, site.url("/docs/"))
                before = await sources(stub)
                site.set("/docs/", index(["twin.html"]))  # the twin is found, the original only by the sweep
                second = await crawl(stub, site.url("/docs/"))
                after = await sources(stub)

    assert site.url("/docs/a.html") in before and site.url("/docs/twin.html") not in before
    assert second.pages_added == 0 and sorted(after) == sorted(before)


async def test_a_page_moved_to_a_new_address_keeps_its_text_in_the_knowledge_base(make_settings):
    """The site moved a page: its new URL is found first, the old one answers 404 in the sweep. The old URL
    held the knowledge base's copy, so the new one was first skipped as its duplicate; once the old page is
    gone the new one is indexed in the same crawl, and the text never leaves the knowledge base for long."""
    settings = make_settings()
    services = bootstrap(settings, embedder=CountingEmbedder())
    with FreshSite() as site:
        body = html("Page A", WORDS["a"] * 8)
        site.set("/docs/a.html", Page(body, "etag"))
        site.set("/docs/", index(["a.html"]))
        with running_worker(settings, services, threads=2):
            async with admin_api(settings, services) as (stub, _):
                await crawl(stub, site.url("/docs/"))
                before = await sources(stub)
                site.set("/docs/moved.html", Page(body))
                site.set("/docs/a.html", Page(b"", status=404))
                site.set("/docs/", index(["moved.html"]))
                second = await crawl(stub, site.url("/docs/"))
                after = await sources(stub)
                third = await crawl(stub, site.url("/docs/"))

    assert site.url("/docs/a.html") in before
    assert second.state == pb.JOB_STATE_SUCCEEDED, second.error
    assert site.url("/docs/a.html") not in after and site.url("/docs/moved.html") in after
    assert after[site.url("/docs/moved.html")].chunk_count == before[site.url("/docs/a.html")].chunk_count
    assert (third.pages_added, third.pages_removed) == (0, 0)  # settled: nothing left for the next crawl


@pytest.mark.parametrize("validator", ["etag", "none"])  # redelivered: a 304, or the same content read again
def test_a_page_redelivered_after_its_worker_died_past_the_write_counts_as_written(make_settings, validator):
    """A worker died after writing a page but before counting it; the redelivered message finds the page as
    its own first run wrote it: counted as added with its chunks, not as unchanged with none."""
    from workers.pipeline import build_page_crawler

    settings = make_settings()
    services = bootstrap(settings, embedder=CountingEmbedder())
    with FreshSite() as site:
        site.set("/docs/a.html", Page(page("a").body, validator))
        url = site.url("/docs/a.html")
        job = services.jobs.create(knowledge_base=KB, url=url, max_pages=5, max_depth=1)
        crawler = build_page_crawler(services, lambda *message: None, lambda *_: None)
        assert services.jobs.begin_page(job.id, url)[0] == "run"
        crawler._index(services.jobs.get(job.id), url, 0)  # written; the worker dies before finish_page

        crawler.crawl_page(job.id, url, 0)  # the broker redelivers the message

        counted = services.jobs.get(job.id)
        stored = services.store.get_source(KB, url).source.chunk_count
    assert stored > 0
    assert (counted.pages_done, counted.pages_added, counted.pages_unchanged) == (1, 1, 0)
    assert counted.chunks_indexed == stored
