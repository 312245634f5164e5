"""Hostile sites on loopback: bombs, trickles, floods of links, endless calendars, broken bytes and redirects
out of the web. Each crawl ends in a terminal state with the reason in its events, and the same worker then
crawls an ordinary page: nothing it met took it down."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from ragcord.crawls import start_crawl
from ragcord.jobs.records import EventKind
from tests.harness import running_worker
from tests.sitekit import GZIP_BOMB_BYTES, MANY_LINKS, FixtureSite
from workers.actors import declare_actors
from workers.broker import build_broker

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
CAP = 5_000_000  # max_page_bytes (the default)
MiB = 1024 * 1024


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def crawler(settings):
    """A worker in this process, and `crawl(url, **request)` that runs one crawl to its end through it."""
    with running_worker(settings, threads=2) as services:
        broker = build_broker(settings)
        enqueue = declare_actors(broker, settings).enqueue_page

        def crawl(url: str, kb: str = "hostile", timeout: float = 120, **request):
            job = start_crawl(settings, services.jobs, enqueue, url=url, knowledge_base=kb, **request)
            deadline = time.monotonic() + timeout
            while not (job := services.jobs.get(job.id)).state.terminal:
                assert time.monotonic() < deadline, f"crawl of {url} never ended: {job}"
                time.sleep(0.05)
            pages = {
                e.page_url: (e.kind.value.removeprefix("PAGE_"), e.detail)
                for e in services.jobs.events(job.id, count=10_000)
                if e.page_url
                and e.kind in (EventKind.PAGE_INDEXED, EventKind.PAGE_SKIPPED, EventKind.PAGE_FAILED)
            }
            return job, pages

        try:
            yield crawl, services
        finally:
            broker.close()


@pytest.fixture
def hostile():
    with FixtureSite(root=SITE) as site:
        yield site


@pytest.fixture
def ordinary():
    with FixtureSite(root=SITE) as site:
        yield site


def still_serves(crawl, ordinary) -> None:
    """The worker that met the hostile site crawls an ordinary page next."""
    job, pages = crawl(ordinary.url("/docs/installation.html"), kb="after", max_pages=1)
    assert job.state.value == "SUCCEEDED" and job.pages_done == 1, pages


CASES = {
    # name: (path, expected outcome, words the reason holds)
    "gzip bomb": (
        "/hostile/gzip-bomb.html",
        "SKIPPED",
        f"too large: over {CAP} bytes once decompressed (gzip",
    ),
    "brotli bomb": ("/hostile/brotli-bomb.html", "FAILED", "unsupported Content-Encoding 'br'"),
    "one 20 MB line": ("/hostile/one-line.html", "SKIPPED", f"too large (over {CAP} bytes)"),
    "redirect to file://": (
        "/hostile/redirect?to=" + quote("/hostile/redirect?to=file:///etc/passwd", safe="/"),
        "SKIPPED",
        "redirected to a non-HTTP URL file:///etc/passwd",
    ),
    "redirect to gopher://": (
        "/hostile/redirect?to=gopher://127.0.0.1:70/1/",
        "SKIPPED",
        "redirected to a non-HTTP URL gopher://127.0.0.1:70/1/",
    ),
    "invalid UTF-8": ("/hostile/bad-encoding.html", "INDEXED", "Broken bytes"),
    "unknown charset": ("/hostile/bad-encoding.html?charset=x-klingon", "INDEXED", "Broken bytes"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_page_ends_with_its_reason_and_the_worker_lives_on(case, make_settings, hostile, ordinary):
    path, outcome, reason = CASES[case]
    with crawler(make_settings()) as (crawl, services):
        started = time.monotonic()
        job, pages = crawl(hostile.url(path), max_pages=1)
        took = time.monotonic() - started
        kind, detail = pages[hostile.url(path)]
        assert job.state.terminal
        assert kind == outcome and reason in detail, (kind, detail)
        if outcome == "INDEXED":
            (source,) = [s for s in services.store.list_sources("hostile")]
            text = " ".join(c.text for c in services.store.get_source("hostile", source.url).chunks)
            assert (
                "Quillstack encoder says caf" in text and "the rest" in text
            )  # decoded around the bad bytes
        still_serves(crawl, ordinary)
    print(f"{case}: {kind} '{detail}' in {took:.2f}s")


def test_a_bomb_is_refused_without_inflating_it(make_settings, hostile, ordinary):
    with crawler(make_settings()) as (crawl, _):
        before = rss_bytes()
        started = time.monotonic()
        job, pages = crawl(hostile.url("/hostile/gzip-bomb.html"), max_pages=1)
        took = time.monotonic() - started
        grew = rss_bytes() - before
    (detail,) = [d for _, d in pages.values()]
    sent = int(detail.rsplit("(gzip, ", 1)[1].split(" bytes")[0])
    assert sent < GZIP_BOMB_BYTES / 1000  # a few MB of the ~10 MB the server would send for 10 GiB
    assert grew < 200 * MiB
    print(
        f"gzip bomb of {GZIP_BOMB_BYTES / 1024**3:g} GiB: refused at {CAP} bytes after {sent} sent, in "
        f"{took:.2f}s (crawl end to end), RSS +{grew / MiB:.0f} MiB"
    )


def test_a_body_trickling_a_byte_a_second_hits_the_page_deadline(make_settings, hostile, ordinary):
    # The read timeout (2 s) never fires: a byte comes every second. Only the deadline ends the page.
    with crawler(make_settings(page_deadline_seconds=3.0)) as (crawl, _):
        started = time.monotonic()
        job, pages = crawl(hostile.url("/hostile/trickle.html"), max_pages=1)
        took = time.monotonic() - started
        kind, detail = pages[hostile.url("/hostile/trickle.html")]
        assert job.state.terminal and kind == "FAILED"
        assert "took longer than the page deadline of 3s" in detail
        still_serves(crawl, ordinary)
    print(f"trickle: {kind} '{detail}' after {took:.2f}s")


def test_a_page_with_100k_links_keeps_the_frontier_within_max_pages(make_settings, hostile, ordinary):
    with crawler(make_settings()) as (crawl, _):
        before = rss_bytes()
        started = time.monotonic()
        job, pages = crawl(hostile.url("/hostile/many-links.html"), max_pages=20)
        took = time.monotonic() - started
        grew = rss_bytes() - before
        assert job.state.value == "SUCCEEDED"
        assert job.pages_discovered == 20 and len(pages) == 20
        assert job.pages_done == 20
        fetched = [p for p in hostile.requests if p.startswith("/hostile/links/")]
        assert len(fetched) == 19
        assert grew < 300 * MiB
        still_serves(crawl, ordinary)
    print(f"{MANY_LINKS} links on one page, max_pages 20: 20 pages, {took:.2f}s, RSS +{grew / MiB:.0f} MiB")


@pytest.mark.parametrize(("max_pages", "max_depth"), [(15, 100), (1000, 4)])
def test_an_endless_calendar_ends_at_max_pages_or_max_depth(
    max_pages, max_depth, make_settings, hostile, ordinary
):
    with crawler(make_settings()) as (crawl, _):
        job, pages = crawl(
            hostile.url("/hostile/calendar/2026-01.html"), max_pages=max_pages, max_depth=max_depth
        )
        assert job.state.value == "SUCCEEDED"
        assert job.pages_discovered <= max_pages and job.outstanding == 0
        assert all(kind == "INDEXED" for kind, _ in pages.values())
        if max_pages == 15:
            assert job.pages_discovered == 15
        else:  # depth 4 from one month: a few dozen months at most, far from 1000
            assert 10 < job.pages_discovered < 200
        still_serves(crawl, ordinary)


@pytest.mark.parametrize(
    "robots",
    [
        b"User-agent: *\nDisallow: /hostile/pages/private\n"
        + b"# filler line of a huge robots.txt\n" * 300_000,
        bytes(range(256)) * 40_000,  # 10 MB of binary
    ],
    ids=["10 MB", "binary"],
)
def test_a_huge_or_binary_robots_txt_is_read_up_to_500_kib(robots, make_settings, ordinary):
    with FixtureSite(root=SITE, robots=robots) as site, crawler(make_settings()) as (crawl, _):
        job, pages = crawl(site.url("/hostile/pages/a.html"), max_pages=1)
        assert job.state.value == "SUCCEEDED", pages
        assert pages[site.url("/hostile/pages/a.html")][0] == "INDEXED"
        if robots.startswith(b"User-agent"):  # its rules in the first 500 KiB still hold
            job, pages = crawl(site.url("/hostile/pages/private.html"), kb="private", max_pages=1)
            assert pages[site.url("/hostile/pages/private.html")] == ("SKIPPED", "disallowed by robots.txt")
        still_serves(crawl, ordinary)
