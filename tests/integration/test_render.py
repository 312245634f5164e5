"""Pages rendered by JavaScript, end to end through the admin API: a Docsify site served on loopback (the npm
package's own script, markdown pages written here) is crawled whole with RENDER_AUTO, its `#/page` routes
followed, and the request its page makes to another host never arrives; a static site never starts a
browser; without Chromium the crawl goes on and says so once (RENDER_AUTO) or fails its pages (ALWAYS).

Chromium is Debian's `chromium`, installed here when missing; docsify is fetched with `npm pack` into a
temporary folder. Either may skip the tests where it cannot be had, never under CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest

from cli.main import main
from ragcord.bootstrap import bootstrap
from ragcord.jobs.records import EventKind
from rpc.v1 import admin_pb2 as pb
from tests.browser_kit import WORDS, docsify_site
from tests.harness import admin_api
from tests.sitekit import FixtureSite
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.pipeline import PageCrawler, build_page_crawler

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"


@contextlib.contextmanager
def worker(settings) -> Iterator[PageCrawler]:
    """A real Dramatiq worker in this process; yields its PageCrawler (and so its browser)."""
    services = bootstrap(settings)
    broker = build_broker(settings)
    crawler: list[PageCrawler] = []
    actors = declare_actors(broker, settings, lambda: crawler[0])
    crawler.append(build_page_crawler(services, actors.enqueue_page))
    running = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    running.start()
    try:
        yield crawler[0]
    finally:
        running.stop(timeout=10_000)
        broker.close()
        crawler[0].fetcher.close()
        if crawler[0].rendering is not None:
            crawler[0].rendering.close()
        services.close()


def crawl_through_api(settings, crawler: PageCrawler, url: str, kb: str, **request) -> tuple[pb.Job, dict]:
    """StartCrawl through the admin API, then the job once it ended and its page events by URL."""

    async def run() -> pb.Job:
        async with admin_api(settings, None) as (stub, _):
            job = await stub.StartCrawl(pb.StartCrawlRequest(url=url, knowledge_base=kb, **request))
            deadline = time.monotonic() + 180
            while job.state not in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
                assert time.monotonic() < deadline, f"crawl of {url} never ended: {job}"
                await asyncio.sleep(0.1)
                job = await stub.GetJob(pb.GetJobRequest(job_id=job.id))
            return job

    job = asyncio.run(run())
    pages = {
        e.page_url: (e.kind.value.removeprefix("PAGE_"), e.detail)
        for e in crawler.jobs.events(job.id, count=10_000)
        if e.kind in (EventKind.PAGE_INDEXED, EventKind.PAGE_SKIPPED, EventKind.PAGE_FAILED)
    }
    return job, pages


def text_of(crawler: PageCrawler, kb: str, url: str) -> str:
    return " ".join(c.text for c in crawler.store.get_source(kb, url).chunks)


def test_a_docsify_site_is_crawled_whole_with_render_auto(
    chromium, docsify_js, make_settings, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG, logger="workers.render")
    (tmp_path / "elsewhere").mkdir()
    with FixtureSite(root=tmp_path / "elsewhere") as other:
        root = docsify_site(tmp_path / "site", docsify_js, other.base_url)
        with FixtureSite(root=root) as site, worker(make_settings()) as crawler:
            job, pages = crawl_through_api(make_settings(), crawler, site.url("/"), "docsify")
            assert job.state == pb.JOB_STATE_SUCCEEDED and job.render == pb.RENDER_AUTO, job
            for route, words in WORDS.items():
                url = site.url("/") + route
                kind, detail = pages[url]
                assert kind == "INDEXED" and "(rendered)" in detail, (url, kind, detail)
                assert words in text_of(crawler, "docsify", url), url
            assert crawler.rendering is not None and crawler.rendering.browser.launches == 1
            # The page asked another host for a script: the browser was refused it before any request left.
            assert other.requests == [], other.requests
            assert f"{other.base_url}/analytics.js: another host" in caplog.text
            assert site.hits("/install.md") >= 1 and site.hits("/scheduler.md") >= 1


def test_a_static_site_never_starts_a_browser(chromium, make_settings):
    with FixtureSite(root=SITE) as site, worker(make_settings()) as crawler:
        job, pages = crawl_through_api(make_settings(), crawler, site.url("/docs/"), "static", max_pages=8)
        assert job.state == pb.JOB_STATE_SUCCEEDED and job.pages_done >= 4, (job, pages)
        assert any(kind == "INDEXED" for kind, _ in pages.values())
        assert not any("rendered" in detail for _, detail in pages.values()), pages
        assert crawler.rendering is not None and crawler.rendering.browser.launches == 0
        assert not crawler.rendering.browser.running


def test_without_chromium_auto_goes_on_and_says_so_once(docsify_js, make_settings, tmp_path):
    settings = make_settings(chromium_path=str(tmp_path / "no-such-chromium"))
    (tmp_path / "other").mkdir()
    with FixtureSite(root=tmp_path / "other") as other:
        root = docsify_site(tmp_path / "site", docsify_js, other.base_url)
        shutil.copy(root / "index.html", root / "shell.html")
        (root / "plain.html").write_text(
            "<html><head><title>Plain</title></head><body><main><h1>Plain page</h1><p>"
            + "Quillstack's plain page is static HTML and needs no browser at all. " * 8
            + '</p><p><a href="index.html">home</a> <a href="shell.html">shell</a></p></main></body></html>'
        )
        with FixtureSite(root=root) as site, worker(settings) as crawler:
            job, pages = crawl_through_api(
                settings, crawler, site.url("/plain.html"), "nochrome", max_pages=5
            )
            assert job.state == pb.JOB_STATE_SUCCEEDED, job
            assert set(pages) == {site.url(p) for p in ("/plain.html", "/", "/shell.html")}, pages
            told = [detail for _, detail in pages.values() if "Chromium is not installed" in detail]
            assert len(told) == 1, pages
            assert "install Debian's `chromium` package" in told[0]
            shells = [pages[site.url("/")][1], pages[site.url("/shell.html")][1]]
            assert all("unavailable" in detail for detail in shells), shells
            assert "unavailable" not in pages[site.url("/plain.html")][1]
            assert crawler.rendering is not None and crawler.rendering.browser.launches == 0

            job, pages = crawl_through_api(
                settings, crawler, site.url("/"), "nochrome2", render=pb.RENDER_ALWAYS, max_pages=1
            )
            ((kind, detail),) = pages.values()
            assert kind == "FAILED" and "Chromium is not installed" in detail, (kind, detail)

            job, pages = crawl_through_api(
                settings, crawler, site.url("/plain.html"), "nochrome3", render=pb.RENDER_NEVER, max_pages=1
            )
            ((kind, detail),) = pages.values()
            assert kind == "INDEXED" and "Chromium" not in detail, (kind, detail)


async def test_the_cli_asks_for_a_render_mode(make_settings, monkeypatch, capsys):
    settings = make_settings()
    for name, value in {
        "RAGCORD_REDIS_URL": settings.redis_url,
        "RAGCORD_KEY_PREFIX": settings.key_prefix,
        "RAGCORD_DATA_DIR": str(settings.data_dir),
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_ADMIN_TOKEN": "",
    }.items():
        monkeypatch.setenv(name, value)
    services = bootstrap(settings)
    try:
        async with admin_api(settings, services) as (stub, address):
            for mode, expected in (
                ("never", pb.RENDER_NEVER),
                ("always", pb.RENDER_ALWAYS),
                (None, pb.RENDER_AUTO),
            ):
                flags = ["--render", mode] if mode else []
                command = ["crawl", "http://127.0.0.1:9/docs/", *flags, "--address", address]
                assert await asyncio.to_thread(main, command) == 0, capsys.readouterr()
                job_id = capsys.readouterr().out.split()[2].rstrip(":")
                job = await stub.GetJob(pb.GetJobRequest(job_id=job_id))
                assert job.render == expected, (mode, job)
                await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))
            with pytest.raises(SystemExit):
                main(["crawl", "http://127.0.0.1:9/docs/", "--render", "sometimes", "--address", address])
            assert "invalid choice: 'sometimes'" in capsys.readouterr().err
    finally:
        services.close()
