"""Hostile pages in the headless browser: each is bounded (render deadline, rendered size, requests, the
address guard, popups and navigation away) and the same browser renders an ordinary page afterwards."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragcord.errors import TooLarge
from tests.sitekit import FixtureSite
from workers.crawler import DeadlineExceeded, FetchedPage, Fetcher, extract
from workers.render import Browser

ORDINARY = """<!DOCTYPE html><html><head><title>Ordinary</title></head><body><div id="app"></div>
<script>document.getElementById("app").innerHTML =
  "<main><h1>Ordinary page</h1><p>Written by a script: the browser still renders pages.</p></main>";</script>
</body></html>"""

PAGES = {
    # CPU: the page's script never returns.
    "spin.html": """<html><head><title>Spin</title></head><body><main><h1>Spins</h1></main>
<script>while (true) {}</script></body></html>""",
    # Never stops loading: a request the server answers one byte a second.
    "loading.html": """<html><head><title>Loading</title></head><body><div id="app"></div>
<script>fetch("/hostile/trickle.html");
document.getElementById("app").innerHTML = "<main><h1>Still loading</h1><p>Text written at once.</p></main>";
</script></body></html>""",
    # 300 KB of text once rendered.
    "huge.html": """<html><head><title>Huge</title></head><body><div id="app"></div>
<script>document.getElementById("app").textContent = "quill ".repeat(50000);</script></body></html>""",
    # A popup, then navigation away to another page of the site.
    "away.html": """<html><head><title>Away</title></head><body><div id="app"></div>
<script>window.open("/popup.html");
document.getElementById("app").innerHTML = "<main><h1>Stays here</h1><p>The page stays put.</p></main>";
location.href = "/elsewhere.html";</script></body></html>""",
    # Many requests.
    "flood.html": """<html><head><title>Flood</title></head><body><main><h1>Flood</h1></main>
<script>for (let i = 0; i < 40; i++) fetch("/data/" + i + ".json");</script></body></html>""",
    # An alert() would stop the page's scripts.
    "alert.html": """<html><head><title>Alert</title></head><body><div id="app"></div>
<script>alert("hello");
document.getElementById("app").innerHTML = "<main><h1>Alert</h1><p>After the alert.</p></main>";
</script></body></html>""",
    # Data from the same host, read by a script.
    "data.html": """<html><head><title>Data</title></head><body><div id="app"></div>
<script>fetch("/data/1.json").then(r => r.text())
  .then(t => { document.getElementById("app").textContent = t; });
</script></body></html>""",
    "ordinary.html": ORDINARY,
    "popup.html": "<html><body><h1>Popup</h1></body></html>",
    "elsewhere.html": "<html><body><h1>Elsewhere</h1></body></html>",
}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[FixtureSite]:
    for name, text in PAGES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "data").mkdir()
    for i in range(40):
        (tmp_path / "data" / f"{i}.json").write_text(f'"datum number {i}"')
    with FixtureSite(root=tmp_path) as served:
        yield served


@pytest.fixture
def browser(chromium, make_settings) -> Iterator[Browser]:
    settings = make_settings(render_deadline_seconds=6.0, render_max_requests=5, max_page_bytes=100_000)
    fetcher = Fetcher(settings)
    made = Browser(settings, fetcher)
    try:
        yield made
    finally:
        made.close()
        fetcher.close()


def static(browser: Browser, url: str) -> FetchedPage:
    return browser.fetcher.fetch(url)


def rendered_text(browser: Browser, url: str) -> str:
    page = static(browser, url)
    html = browser.render(page)
    return extract(FetchedPage(url, url, 200, "text/html", html, "utf-8")).text


def still_renders(browser: Browser, site: FixtureSite) -> None:
    assert "Written by a script" in rendered_text(browser, site.url("/ordinary.html"))


def test_a_page_that_spins_the_cpu_ends_at_the_render_deadline(browser, site):
    with pytest.raises(DeadlineExceeded, match="render deadline of 6s"):
        browser.render(static(browser, site.url("/spin.html")))
    still_renders(browser, site)


def test_a_page_that_never_stops_loading_is_read_as_it_stands(browser, site):
    text = rendered_text(browser, site.url("/loading.html"))
    assert "Text written at once" in text
    assert site.hits("/hostile/trickle.html") == 1
    still_renders(browser, site)


def test_a_page_too_large_once_rendered_is_refused(browser, site):
    with pytest.raises(TooLarge, match="too large once rendered"):
        browser.render(static(browser, site.url("/huge.html")))
    still_renders(browser, site)


def test_popups_and_navigation_away_stay_on_the_page(browser, site):
    text = rendered_text(browser, site.url("/away.html"))
    assert "The page stays put" in text and "Elsewhere" not in text
    assert site.hits("/popup.html") == 0 and site.hits("/elsewhere.html") == 0, site.requests
    still_renders(browser, site)


def test_a_page_makes_at_most_its_requests(browser, site):
    browser.render(static(browser, site.url("/flood.html")))
    data = [r for r in site.requests if r.startswith("/data/")]
    assert len(data) == 5, data  # render_max_requests
    still_renders(browser, site)


def test_a_dialog_does_not_stop_the_page(browser, site):
    assert "After the alert" in rendered_text(browser, site.url("/alert.html"))


def test_the_address_guard_holds_for_the_pages_requests(chromium, make_settings, site, caplog):
    """A crawl that may not reach private addresses: the page's own request to its (loopback) host is refused
    by the crawler's guard, though the page itself came in (here: handed over as if fetched)."""
    caplog.set_level(logging.DEBUG, logger="workers.render")
    settings = make_settings(allow_private_networks=False, render_deadline_seconds=6.0)
    fetcher = Fetcher(settings)
    browser = Browser(settings, fetcher)
    try:
        url = site.url("/data.html")
        page = FetchedPage(url, url, 200, "text/html", PAGES["data.html"].encode(), "utf-8")
        html = browser.render(page)
        assert b"datum number" not in html
        assert site.hits("/data/1.json") == 0
        assert "private, loopback or link-local" in caplog.text
    finally:
        browser.close()
        fetcher.close()


def test_a_browser_that_dies_is_started_again_and_close_ends_it(browser, site):
    still_renders(browser, site)
    first = browser._process
    assert first is not None and browser.launches == 1
    os.killpg(first.proc.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    deadline = time.monotonic() + 10
    while browser.running and time.monotonic() < deadline:
        time.sleep(0.05)
    still_renders(browser, site)
    assert browser.launches == 2
    second = browser._process
    assert second is not None
    browser.close()
    assert not group_alive(second.proc.pid), "a process of the browser outlived close()"


def group_alive(pgid: int, within: float = 10.0) -> bool:
    """Whether a process of the group is still there after `within` seconds (killed ones take a moment to
    be reaped by init)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True
