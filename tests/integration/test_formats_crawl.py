"""PDF, Markdown, reStructuredText and plain text end to end: a docs site on loopback linking to each is
crawled through the admin API, each becomes a source with sections, and an answer cites a PDF's page.
Then hostile files of each kind: every one ends with its reason and the worker crawls on."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from rpc.v1 import admin_pb2 as pb
from tests.formatkit import (
    MARKDOWN_README,
    PDF_SPEC,
    RST_README,
    FileServer,
    debian_file,
    page_count_bomb,
    stream_bomb,
    streamed,
)
from tests.harness import admin_api, running_worker
from tests.integration.test_crawl import outcomes, watch_to_end
from tests.integration.test_hostile_sites import crawler, still_serves
from tests.sitekit import FixtureSite

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
INDEX = b"""<!doctype html><html><head><title>Quillstack downloads</title></head><body><main>
<h1>Quillstack downloads</h1>
<p>Everything the Quillstack project publishes besides these pages: the printable specification, the
README of the source repository, release notes and the changelog. Read them offline or search them here.</p>
<ul><li><a href="manual.pdf">The specification (PDF)</a></li>
<li><a href="raw/README.md">README of the repository</a></li>
<li><a href="raw/jansson.rst">Notes in reStructuredText</a></li>
<li><a href="CHANGES.txt">Changelog</a></li>
<li><a href="logo.png">Logo</a></li>
<li><a href="_sources/index.rst.txt">Page source</a></li></ul>
</main></body></html>"""
GUIDE_MD = b"""# Deployment guide

## Running behind a proxy

Set `QUILL_PROXY_HEADERS=1` so that the worker trusts the proxy's forwarded headers.
"""
CHANGES = b"""Quillstack changelog

3.2.0
  - The scheduler no longer runs periodic jobs twice when two workers start at once.

3.1.0
  - New setting max_attempts per task.
"""


@pytest.fixture
def formats_site():
    pdf = debian_file(*PDF_SPEC).read_bytes()
    readme = debian_file(*MARKDOWN_README).read_bytes() + b"\n\nSee the [deployment guide](guide.md).\n"
    rst = debian_file(*RST_README).read_bytes()
    routes = {
        "/docs/": ("text/html; charset=utf-8", INDEX),
        "/docs/manual.pdf": ("application/pdf", pdf),
        "/docs/raw/README.md": ("text/plain; charset=utf-8", readme),  # as GitHub's raw host serves it
        "/docs/raw/guide.md": ("text/markdown; charset=utf-8", GUIDE_MD),
        "/docs/raw/jansson.rst": ("text/x-rst", rst),
        "/docs/CHANGES.txt": ("text/plain", CHANGES),
        "/docs/logo.png": ("image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
        "/docs/_sources/index.rst.txt": ("text/plain", b"Quillstack downloads\n===================="),
    }
    with FileServer(routes) as server:
        yield server


async def test_a_site_linking_to_a_pdf_markdown_rst_and_text_indexes_each_and_cites_a_pdf_page(
    make_settings, formats_site
):
    site = formats_site
    settings = make_settings()
    with running_worker(settings, threads=2) as services:
        async with admin_api(settings, services) as (stub, _):
            job = await stub.StartCrawl(
                pb.StartCrawlRequest(url=site.url("/docs/"), knowledge_base="formats")
            )
            events = await watch_to_end(stub, job.id)
            sources = {
                s.url: s
                for s in (await stub.ListSources(pb.ListSourcesRequest(knowledge_base="formats"))).sources
            }
            pdf = await stub.GetSource(
                pb.GetSourceRequest(knowledge_base="formats", url=site.url("/docs/manual.pdf"))
            )
            readme = await stub.GetSource(
                pb.GetSourceRequest(knowledge_base="formats", url=site.url("/docs/raw/README.md"))
            )
            answer = await stub.Ask(
                pb.AskRequest(
                    question="Which command must an application run after installing its MIME XML file?",
                    knowledge_base="formats",
                )
            )

    assert events[-1].job.state == pb.JOB_STATE_SUCCEEDED
    pages = outcomes(events)
    indexed = {
        site.url(p) for p in ("/docs/", "/docs/manual.pdf", "/docs/raw/README.md", "/docs/raw/guide.md")
    }
    indexed |= {site.url("/docs/raw/jansson.rst"), site.url("/docs/CHANGES.txt")}
    assert set(sources) == indexed, pages
    assert pages[site.url("/docs/manual.pdf")] == ("PAGE_INDEXED", "Shared MIME-info Database")
    assert pages[site.url("/docs/raw/guide.md")] == ("PAGE_INDEXED", "Deployment guide")  # a Markdown link
    assert pages[site.url("/docs/raw/jansson.rst")] == ("PAGE_INDEXED", "Jansson README")
    assert pages[site.url("/docs/CHANGES.txt")] == ("PAGE_INDEXED", "Quillstack changelog")
    kind, detail = pages[site.url("/docs/logo.png")]
    assert kind == "PAGE_SKIPPED" and detail.startswith("not a page type ragcord reads (image/png")
    assert pages[site.url("/docs/_sources/index.rst.txt")] == (
        "PAGE_SKIPPED",
        "a Sphinx page's source text: the page itself is read",
    )
    assert {c.heading for c in pdf.chunks} >= {"Page 1", "Page 3"}
    assert {c.anchor for c in pdf.chunks} >= {"page=1", "page=3"}
    assert {c.anchor for c in readme.chunks} >= {"introduction", "installation", "usage"}
    cited = [c.url for c in answer.citations]
    assert cited and cited[0].startswith(site.url("/docs/manual.pdf#page=")), cited
    assert "update-mime-database" in answer.text


def _gzip_bomb(handler) -> None:
    body = gzip.compress(b"a" * (60 * 1024 * 1024), 9)
    handler.send_response(200)
    handler.send_header("Content-Type", "text/markdown")
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except OSError:
        pass


HOSTILE = {
    # name: (content type, what makes the body (or the handler), expected outcome, words the reason holds)
    "50 MB of Markdown, no Content-Length": (
        None,
        lambda: streamed("text/markdown", 50 * 1024 * 1024, b"- item\n"),
        "SKIPPED",
        "too large (over 5000000 bytes)",
    ),
    "a 30 MB PDF": (
        "application/pdf",
        lambda: b"%PDF-1.4\n" + b"0" * 30_000_000,
        "SKIPPED",
        "limit 20000000",
    ),
    "a gzip bomb of Markdown": (
        None,
        lambda: _gzip_bomb,
        "SKIPPED",
        "over 5000000 bytes once decompressed (gzip",
    ),
    "a PDF of 200k pages": (
        "application/pdf",
        lambda: page_count_bomb(200_000),
        "SKIPPED",
        "LimitReachedError",
    ),
    "a PDF stream inflating to 200 MB": (
        "application/pdf",
        lambda: stream_bomb(200_000_000),
        "SKIPPED",
        "no text could be extracted (1 page could not be read (LimitReachedError: Limit reached while",
    ),
    "a PDF that is not one": (
        "application/pdf",
        lambda: b"<html>login</html>",
        "SKIPPED",
        "served as a PDF but is not one",
    ),
    "lists nested 100k deep": (
        "text/markdown",
        lambda: b"- " * 100_000 + b"deep\n\nAfter the lists.\n",
        "INDEXED",
        "After the lists.",  # what is nested past markdown-it's 20 levels is left out
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_ends_with_its_reason_and_the_worker_lives_on(case, make_settings):
    content_type, make, outcome, reason = HOSTILE[case]
    route = (content_type, make()) if content_type else make()
    with FileServer({"/files/hostile": route}) as server, FixtureSite(root=SITE) as ordinary:
        with crawler(make_settings()) as (crawl, _):
            started = time.monotonic()
            job, pages = crawl(server.url("/files/hostile"), max_pages=1)
            took = time.monotonic() - started
            kind, detail = pages[server.url("/files/hostile")]
            assert job.state.terminal
            assert kind == outcome and reason in detail, (kind, detail)
            still_serves(crawl, ordinary)
    print(f"{case}: {kind} '{detail}' in {took:.2f}s")
