"""When a page is rendered, which links of a rendered page are pages (`#/route`), and what a crawl does when
no browser can render (no Chromium here: the Browser is real, its executable absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcord.crawls import parse_render
from ragcord.errors import InvalidArgument
from ragcord.jobs import JobRecord, JobState, RenderMode
from ragcord.settings import Settings
from workers.crawler import FetchedPage, Fetcher, extract
from workers.render import (
    Browser,
    Rendering,
    RenderUnavailable,
    find_chromium,
    hash_route,
    hash_route_links,
    needs_render,
)

SHELL = b"""<!DOCTYPE html><html><head><title>Docs</title></head><body><div id="app">Loading...</div>
<script src="docsify.min.js"></script></body></html>"""
STATIC = (
    b"<html><head><title>Static</title><script>var analytics = 1;</script></head>"
    + b"<body><main><h1>Install</h1><p>"
    + b"Install the package with pip and start a worker process for every core. " * 6
    + b"</p></main></body></html>"
)
# A short page of a real reference (CMake's property pages are ~150 characters) inside its navigation.
SHORT_WITH_NAV = (
    b"<html><head><title>PREFIX</title><script src='searchtools.js'></script></head><body>"
    b"<div class='related'><ul><li>index</li><li>next</li><li>previous</li>"
    b"<li>CMake 3.25 Documentation</li><li>cmake-properties(7)</li></ul></div>"
    b"<div class='body'><h1>PREFIX</h1><p>What comes before the library name.</p></div>"
    b"<div class='sphinxsidebar'><h4>Previous topic</h4><p>POST_INSTALL_SCRIPT</p>"
    b"<h4>Next topic</h4><p>PRE_INSTALL_SCRIPT</p><h3>This Page</h3><ul><li>Show Source</li></ul>"
    b"<h3>Quick search</h3></div><div class='footer'>Copyright 2000-2022 Kitware, Inc. and Contributors. "
    b"Created using Sphinx 5.3.0.</div></body></html>"
)
# A single-page app whose server renders its header and footer, and the rest into <div id="root">.
SPA_WITH_CHROME = (
    b"<html><head><title>API</title></head><body><header><nav>Home Guides API reference Changelog Blog "
    b"Community Support Status Pricing Sign in Get started for free today with our hosted plan</nav></header>"
    b"<div id='root'></div><footer>Copyright 2026 Example Corp. All rights reserved. Privacy Terms Cookies "
    b"Security Contact Careers Press Brand Partners Investors</footer><script src='/app.js'></script>"
    b"</body></html>"
)
NO_SCRIPT = b"<html><head><title>Empty</title></head><body><p>Soon.</p></body></html>"


@pytest.mark.parametrize(
    ("url", "route"),
    [
        ("http://h/docs/#/guide", "http://h/docs/#/guide"),
        ("http://H:80/docs/index.html#/guide/setup", "http://h/docs/#/guide/setup"),
        ("http://h/#/guide?id=install", "http://h/#/guide"),  # Docsify's section link: the page itself
        ("http://h/#/guide?lang=fr&id=x", "http://h/#/guide?lang=fr"),
        ("http://h/docs/#/", "http://h/docs/"),  # the home route is the page
        ("http://h/docs/#install", None),  # an ordinary anchor
        ("http://h/docs/", None),
    ],
)
def test_hash_routes_are_pages_and_anchors_are_not(url, route):
    assert hash_route(url) == route


def test_a_rendered_pages_hash_links_in_order():
    html = b"""<html><body><nav><a href="#/">Home</a><a href="#/install">Install</a>
    <a href="#/install?id=requirements">Requirements</a><a href="#top">Top</a><a href="other.html">Other</a>
    <a href="/docs/#/config">Config</a><a href="http://elsewhere/#/x">x</a></nav></body></html>"""
    assert hash_route_links(html, "http://h/docs/#/guide") == [
        "http://h/docs/",
        "http://h/docs/#/install",
        "http://h/docs/#/config",
        "http://elsewhere/#/x",  # out of scope: the crawl's scope drops it like any link
    ]


def job(render: RenderMode) -> JobRecord:
    return JobRecord(
        id="j1",
        knowledge_base="kb",
        url="http://h/",
        state=JobState.RUNNING,
        max_pages=10,
        max_depth=3,
        render=render,
    )


def page(body: bytes, url: str = "http://h/") -> FetchedPage:
    return FetchedPage(url, url, 200, "text/html", body, "utf-8")


@pytest.fixture
def rendering():
    settings = Settings(_env_file=None, chromium_path="/nonexistent/chromium")
    fetcher = Fetcher(settings)
    told: list[str] = []

    def first_warning(job_id: str) -> bool:
        told.append(job_id)
        return len(told) == 1

    made = Rendering(settings, Browser(settings, fetcher), first_warning)
    yield made
    made.close()
    fetcher.close()


def test_auto_reads_a_static_page_as_served(rendering):
    fetched = page(STATIC)
    read = rendering.read(job(RenderMode.AUTO), fetched, extract(fetched))
    assert read.page is fetched and read.note == ""


@pytest.mark.parametrize(
    ("body", "rendered"), [(SHELL, True), (SPA_WITH_CHROME, True), (SHORT_WITH_NAV, False), (STATIC, False)]
)
def test_auto_renders_shells_not_short_pages(body, rendered):
    fetched = page(body)
    assert needs_render(body, extract(fetched), 200) is rendered


def test_auto_leaves_a_page_without_scripts_alone(rendering):
    fetched = page(NO_SCRIPT)
    assert rendering.read(job(RenderMode.AUTO), fetched, extract(fetched)).note == ""


def test_auto_without_chromium_says_why_once_per_job_and_goes_on(rendering, caplog):
    fetched = page(SHELL)
    first = rendering.read(job(RenderMode.AUTO), fetched, extract(fetched))
    second = rendering.read(job(RenderMode.AUTO), fetched, extract(fetched))
    assert first.page is fetched and "Chromium is not installed" in first.note
    assert "RAGCORD_CHROMIUM_PATH=/nonexistent/chromium" in first.note
    assert second.note == " (not rendered: rendering is unavailable)"
    assert caplog.text.count("Chromium is not installed") == 1


def test_always_without_chromium_fails_the_page(rendering):
    fetched = page(STATIC)
    with pytest.raises(RenderUnavailable, match="Chromium is not installed"):
        rendering.read(job(RenderMode.ALWAYS), fetched, extract(fetched))


def test_never_never_renders(rendering):
    fetched = page(SHELL)
    assert rendering.read(job(RenderMode.NEVER), fetched, extract(fetched)).note == ""


def test_render_modes_from_requests():
    assert parse_render("") is RenderMode.AUTO
    assert parse_render("always") is RenderMode.ALWAYS
    with pytest.raises(InvalidArgument, match="auto .* always, never"):
        parse_render("sometimes")


def test_a_configured_chromium_that_is_not_there_is_none(tmp_path):
    assert find_chromium(str(tmp_path / "chromium")) is None


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_no_page_of_the_static_generators_is_rendered():
    """Real pages of Sphinx, DocBook, Doxygen, gtk-doc, Go and Texinfo sites (2769 pages of Debian's doc
    packages gave none either): a static site never starts a browser."""
    pages = sorted(FIXTURES.rglob("*.html"))
    assert len(pages) >= 20
    for path in pages:
        body = path.read_bytes()
        fetched = page(body, "http://h/" + path.name)
        assert not needs_render(body, extract(fetched), 200), path


def test_a_generators_short_index_page_with_scripts_is_not_rendered():
    """Doxygen's member indexes (SDL2's functions_k.html: a few links, jQuery and menus loaded) read like
    an empty shell; its meta generator says a static tool wrote them, so they are read as served."""
    body = (
        b'<!DOCTYPE html><html><head><meta name="generator" content="Doxygen 1.9.4"/>'
        b'<script type="text/javascript" src="jquery.js"></script><script src="menu.js"></script></head>'
        b'<body><div id="top"></div><div class="contents">&#160;<h3>- k -</h3><ul>'
        b'<li>key : <a href="structSDL__KeyboardEvent.html">SDL_KeyboardEvent</a></li></ul></div>'
        b"</body></html>"
    )
    fetched = page(body, "http://h/functions_k.html")
    assert not needs_render(body, extract(fetched), 200)
