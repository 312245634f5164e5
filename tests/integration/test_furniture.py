"""Site furniture (a block on most pages of a crawl) is left out of the index, whatever its words (real Redis,
a real store, and a real crawl of a site written here)."""

from __future__ import annotations

import asyncio

import pytest

from ragcord.knowledge.chunking import Section, chunk_id
from ragcord.knowledge.furniture import FURNITURE_MIN_PAGES, FurnitureIndex, block_hash, page_blocks
from ragcord.knowledge.stores import StoredChunk
from ragcord.knowledge.stores.sqlite import SQLiteStore
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api, running_worker
from tests.sitekit import FixtureSite

TAGLINE = "Small. Fast. Reliable. Choose any three."
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
        kept, counted = furniture.strip("job1", f"http://d/{n}.html", sections(n))
        assert kept == sections(n) and not counted.furniture
        assert block_hash(TAGLINE) in counted.recurring  # (every block recurs while few pages are counted)

    kept, counted = furniture.strip("job1", "http://d/last.html", sections(99))

    assert counted.furniture == {block_hash(TAGLINE)}
    assert [s.text for s in kept] == [sections(99)[1].text]  # the page's own text, its notes too
    again, _ = furniture.strip("job1", "http://d/last.html", sections(99))  # a retried page counts once
    counted_pages = furniture.keys.furniture("job1")[1]
    assert again == kept and int(furniture.client.scard(counted_pages)) == FURNITURE_MIN_PAGES


def test_the_crawls_end_removes_chunks_made_only_of_furniture_and_forgets_the_counts(furniture, tmp_path):
    store = SQLiteStore(tmp_path / "store.sqlite3", dim=None)
    try:
        for n in range(FURNITURE_MIN_PAGES):
            url = f"http://d/{n}.html"
            own = f"Page {n} explains option number {n}."
            _, counted = furniture.strip("job1", url, sections(n))
            texts = [TAGLINE, own]
            store.replace_page("docs", url, [stored(url, i, text) for i, text in enumerate(texts)])
            furniture.remember("job1", url, list(enumerate(texts)), counted.recurring)

        removed = furniture.sweep("job1", store, "docs")

        assert removed == FURNITURE_MIN_PAGES
        left = [c.text for batch in store.export("docs") for c in batch]
        own = [f"Page {n} explains option number {n}." for n in range(FURNITURE_MIN_PAGES)]
        assert sorted(left) == sorted(own)
        assert not any(furniture.client.exists(key) for key in furniture.keys.furniture("job1"))
    finally:
        store.close()


def test_the_index_expires_with_the_crawl(furniture, redis_client):
    furniture.strip("job1", "http://d/a.html", sections(1))
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


def write_site(root) -> None:
    nav = "".join(f'<a href="p{n}.html">Topic {n}</a> ' for n in range(PAGES))
    for n in range(PAGES):
        main = (
            f"<p>{TAGLINE}</p><h1>Topic {n}</h1>"
            f"<p>The topic {n} option sets the widget limit to {n * 7} frames per second.</p>"
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
            job = await stub.StartCrawl(pb.StartCrawlRequest(url=site.url("/p0.html"), knowledge_base="docs"))
            async for event in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=120):
                final = event.job
            # The worker that ended the job removes the furniture right after (as it optimizes the store).
            for _ in range(100):
                chunks = [c for batch in services.store.export("docs") for c in batch]
                if not any(TAGLINE in c.text for c in chunks):
                    break
                await asyncio.sleep(0.1)

    assert final.state == pb.JOB_STATE_SUCCEEDED and final.pages_done == PAGES
    texts = [c.text for c in chunks]
    for n in range(PAGES):  # every page's own words are indexed
        assert any(f"widget limit to {n * 7} frames" in t and f"Changed in release {n}." in t for t in texts)
    assert not any(TAGLINE in t for t in texts)  # a chunk of its own on the first pages: removed at the end
    # In a chunk with the page's own words, the footer stays on the pages counted before it was furniture.
    assert sum(FOOTER in t for t in texts) < FURNITURE_MIN_PAGES
