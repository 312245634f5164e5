"""Site furniture (a block on most pages of a crawl) is left out of the index, whatever its words (real Redis,
a real store, and a real crawl of a site written here)."""

from __future__ import annotations

import asyncio

import pytest

from ragcord.knowledge.chunking import Section, chunk_id
from ragcord.knowledge.furniture import FURNITURE_MIN_PAGES, FurnitureIndex, block_hash, page_blocks
from ragcord.knowledge.pages import PageRecords, furniture_key
from ragcord.knowledge.stores import StoredChunk
from ragcord.knowledge.stores.sqlite import SQLiteStore
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api, running_worker
from tests.sitekit import FixtureSite

TAGLINE = "Small. Fast. Reliable. Choose any three."
SOURCE = {"kb": "docs", "source": "http://d/"}
FOOTER = "This page was last built by the documentation robot; report mistakes on the tracker."


@pytest.fixture
def furniture(redis_client, key_prefix):
    return FurnitureIndex(redis_client, prefix=key_prefix)


def sections(n: int) -> list[Section]:
    return [
        Section((), "", TAGLINE),
        Section((f"Page {n}",), "", f"Page {n} explains option number {n}.\n\nNote\n\nNew in {n}.\n\nNote"),
    ]


def test_a_block_a_page_repeats_is_not_counted_for_it():
    held_once = [TAGLINE, "Page 1 explains option number 1.", "New in 1."]  # not its two "Note" labels
    assert page_blocks(sections(1)) == {block_hash(text) for text in held_once}
    assert block_hash("small.  FAST. Reliable.\nChoose any three.") == block_hash(TAGLINE)


def test_a_block_on_most_pages_is_furniture_once_enough_pages_are_counted(furniture):
    for n in range(FURNITURE_MIN_PAGES - 1):
        kept, counted = furniture.strip("job1", f"http://d/{n}.html", sections(n), **SOURCE)
        assert kept == sections(n) and not counted.furniture
        assert block_hash(TAGLINE) in counted.recurring  # (every block recurs while few pages are counted)

    kept, counted = furniture.strip("job1", "http://d/last.html", sections(99), **SOURCE)

    assert counted.furniture == {block_hash(TAGLINE)}
    assert [s.text for s in kept] == [sections(99)[1].text]  # the page's own text, its notes too
    # a retried page counts once
    again, _ = furniture.strip("job1", "http://d/last.html", sections(99), **SOURCE)
    counted_pages = furniture.keys.furniture("job1")[1]
    assert again == kept and int(furniture.client.scard(counted_pages)) == FURNITURE_MIN_PAGES


def test_the_crawls_end_removes_chunks_made_only_of_furniture_and_forgets_the_counts(furniture, tmp_path):
    store = SQLiteStore(tmp_path / "store.sqlite3", dim=None)
    try:
        for n in range(FURNITURE_MIN_PAGES):
            url = f"http://d/{n}.html"
            own = f"Page {n} explains option number {n}."
            _, counted = furniture.strip("job1", url, sections(n), **SOURCE)
            texts = [TAGLINE, own]
            store.replace_page("docs", url, [stored(url, i, text) for i, text in enumerate(texts)])
            furniture.remember("job1", url, list(enumerate(texts)), counted.recurring)

        removed = furniture.sweep("job1", store, "docs", source=SOURCE["source"])

        assert removed == FURNITURE_MIN_PAGES
        left = [c.text for batch in store.export("docs") for c in batch]
        own = [f"Page {n} explains option number {n}." for n in range(FURNITURE_MIN_PAGES)]
        assert sorted(left) == sorted(own)
        assert not any(furniture.client.exists(key) for key in furniture.keys.furniture("job1"))
    finally:
        store.close()


def test_what_a_crawl_found_is_left_out_from_the_first_page_of_the_sources_next_crawl(
    furniture, redis_client, tmp_path
):
    store = SQLiteStore(tmp_path / "store.sqlite3", dim=None)
    try:
        for n in range(FURNITURE_MIN_PAGES):
            furniture.strip("job1", f"http://d/{n}.html", sections(n), **SOURCE)
        furniture.sweep("job1", store, "docs", source=SOURCE["source"])

        # A re-crawl that reads one changed page, and a crawl of another source into the same knowledge base.
        kept, counted = furniture.strip("job2", "http://d/3.html", sections(3), **SOURCE)
        other, _ = furniture.strip("job3", "http://e/3.html", sections(3), kb="docs", source="http://e/")
        # A re-crawl that reads too few pages to judge leaves what the first one found as it was.
        furniture.sweep("job2", store, "docs", source=SOURCE["source"])
        again, _ = furniture.strip("job4", "http://d/4.html", sections(4), **SOURCE)
    finally:
        store.close()

    assert counted.furniture == {block_hash(TAGLINE)} and [s.text for s in kept] == [sections(3)[1].text]
    assert other == sections(3)
    assert [s.text for s in again] == [sections(4)[1].text]
    PageRecords(redis_client, prefix=furniture.prefix).drop("docs")  # the knowledge base is deleted
    assert not redis_client.exists(furniture_key(furniture.prefix, "docs"))


def test_the_index_expires_with_the_crawl(furniture, redis_client):
    furniture.strip("job1", "http://d/a.html", sections(1), **SOURCE)
    furniture.remember("job1", "http://d/a.html", [(0, TAGLINE)], frozenset({block_hash(TAGLINE)}))
    for key in furniture.keys.furniture("job1"):
        assert 0 < redis_client.ttl(key) <= furniture.ttl_seconds


def stored(url: str, index: int, text: str) -> StoredChunk:
    return StoredChunk(
        id=chunk_id(url, index),
        url=url,
        title=url,
        heading="",
        chunk_index=index,
        text=text,
        content_hash=url,
        indexed_at=1.0,
        vector=None,
    )


PAGES = FURNITURE_MIN_PAGES + 10


def write_site(root, changed: frozenset[int] | set[int] = frozenset()) -> None:
    nav = "".join(f'<a href="p{n}.html">Topic {n}</a> ' for n in range(PAGES))
    for n in range(PAGES):
        revised = " (revised)" if n in changed else ""
        main = (
            f"<p>{TAGLINE}</p><h1>Topic {n}</h1>"
            f"<p>The topic {n} option sets the widget limit to {n * 7} frames per second{revised}.</p>"
            f"<p>Note</p><p>Changed in release {n}.</p><p>{FOOTER}</p>"
        )
        page = f"<!doctype html><html><head><title>Topic {n}</title></head><body><nav>{nav}</nav>"
        (root / f"p{n}.html").write_text(f"{page}<main>{main}</main></body></html>")


async def test_a_crawl_leaves_out_the_tagline_of_every_page(make_settings, tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    write_site(root)
    settings = make_settings()
    with FixtureSite(root=root) as site, running_worker(settings, threads=4) as services:
        async with admin_api(settings, services) as (stub, _):
            final = await crawled(stub, services, site.url("/p0.html"))
            chunks = [c for batch in services.store.export("docs") for c in batch]
            write_site(root, changed={1, 2, 3})  # a re-crawl reads three pages: too few to judge alone
            again = await crawled(stub, services, site.url("/p0.html"))
            rewritten = [
                c for batch in services.store.export("docs") for c in batch if c.url.endswith(CHANGED)
            ]

    assert final.state == pb.JOB_STATE_SUCCEEDED and final.pages_done == PAGES
    texts = [c.text for c in chunks]
    for n in range(PAGES):  # every page's own words are indexed
        assert any(f"widget limit to {n * 7} frames" in t and f"Changed in release {n}." in t for t in texts)
    assert not any(TAGLINE in t for t in texts)  # a chunk of its own on the first pages: removed at the end
    # In a chunk with the page's own words, the footer stays on the pages counted before it was furniture.
    assert sum(FOOTER in t for t in texts) < FURNITURE_MIN_PAGES
    # The re-crawl leaves out what the first crawl found, the footer and the tagline, from its first page.
    assert again.state == pb.JOB_STATE_SUCCEEDED and again.pages_updated == 3
    assert {c.url for c in rewritten} == {site.url(f"/p{n}.html") for n in (1, 2, 3)}
    assert all("revised" in c.text and FOOTER not in c.text and TAGLINE not in c.text for c in rewritten)


CHANGED = ("/p1.html", "/p2.html", "/p3.html")


async def crawled(stub, services, url: str) -> pb.Job:
    job = await stub.StartCrawl(pb.StartCrawlRequest(url=url, knowledge_base="docs"))
    async for event in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=120):
        final = event.job
    # The worker that ended the job removes the furniture right after (as it optimizes the store), and keeps
    # what it found for the source's next crawl: wait for that.
    known = furniture_key(services.jobs.keys.prefix, "docs")
    for _ in range(100):
        if services.jobs.redis.hexists(known, url):
            break
        await asyncio.sleep(0.1)
    return final
