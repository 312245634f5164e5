"""A page linked both as `guide.html` and `guide.html?ref=nav` is indexed, and cited, under its plain URL.

Which of two URLs serving one text is kept used to depend on which worker ran first (CI once cited
`installation.html?ref=virtualenv#verify`). Real worker, Redis and LanceDB; the site is served on loopback.
"""

from __future__ import annotations

import pytest

from ragcord.bootstrap import bootstrap
from ragcord.jobs import JobState
from tests.harness import crawl
from tests.sitekit import FixtureSite, html_page

GUIDE = "Run quarkle sync to copy every project to the machines that share your account, then check the log."
FIRST_PAGE = "The changelog's first page lists the releases of this year, newest first, with their dates."


def write_site(root, *, query_first: bool) -> None:
    docs = root / "docs"
    docs.mkdir(parents=True)
    links = ["guide.html?ref=nav", "guide.html", "changes.html?page=2", "changes.html"]
    if not query_first:
        links.reverse()
    nav = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    index = f"<h1>Quarkle</h1><p>The Quarkle manual.</p><ul>{nav}</ul>"
    (docs / "index.html").write_text(html_page("Quarkle", index))
    (docs / "guide.html").write_text(html_page("Guide", f"<h1>Syncing</h1><p>{GUIDE}</p>"))
    (docs / "changes.html").write_text(html_page("Changes", f"<h1>Changes</h1><p>{FIRST_PAGE}</p>"))


@pytest.mark.parametrize("query_first", [True, False], ids=["query-link-first", "plain-link-first"])
def test_the_plain_url_is_the_one_kept(make_settings, tmp_path, query_first):
    write_site(tmp_path / "site", query_first=query_first)
    settings = make_settings()
    services = bootstrap(settings)
    try:
        with FixtureSite(root=tmp_path / "site") as site:
            job = crawl(settings, services, site.url("/docs/"), "docs", max_pages=20)

        assert job.state is JobState.SUCCEEDED, job.error
        sources = {s.url for s in services.store.list_sources("docs")}
        assert sources == {site.url("/docs/"), site.url("/docs/guide.html"), site.url("/docs/changes.html")}
        details = {e.page_url: e.detail for e in services.jobs.events(job.id) if e.page_url}
        for plain, query in (("guide.html", "?ref=nav"), ("changes.html", "?page=2")):
            assert details[site.url(f"/docs/{plain}{query}")] == f"duplicate of {site.url(f'/docs/{plain}')}"
        hits = services.store.keyword_search("docs", "quarkle sync machines", 3)
        assert hits[0].chunk.url == site.url("/docs/guide.html")
    finally:
        services.close()
