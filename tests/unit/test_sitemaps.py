"""Sitemap parsing: indexes, lastmod, gzip, and hostile files refused without harm."""

from __future__ import annotations

import gzip

import pytest

from ragcord.urls import Scope
from workers.crawler import FetchedPage
from workers.sitemaps import MAX_FILES, SitemapRefused, inflate, parse_sitemap, read_sitemaps

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*locs: str, lastmod: str = "") -> bytes:
    mod = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
    items = "".join(f"<url><loc>{loc}</loc>{mod}</url>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset {NS}>{items}</urlset>'.encode()


def index(*locs: str) -> bytes:
    items = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f"<sitemapindex {NS}>{items}</sitemapindex>".encode()


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://a/&lol3;</loc></url></urlset>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://a/&e;</loc></url></urlset>"""


def test_a_urlset_gives_its_pages_with_lastmod_and_an_index_its_sitemaps():
    entries, children = parse_sitemap(urlset("http://a/x", lastmod="2024-05-01T10:00:00Z"))
    assert [e.url for e in entries] == ["http://a/x"] and children == []
    assert entries[0].lastmod == 1714557600.0
    assert parse_sitemap(urlset("http://a/y", lastmod="not a date"))[0][0].lastmod is None
    assert parse_sitemap(index("http://a/s1.xml", "http://a/s2.xml.gz")) == (
        [],
        ["http://a/s1.xml", "http://a/s2.xml.gz"],
    )


@pytest.mark.parametrize("body", [BOMB, EXTERNAL, b"<html><body>no</body></html>", b"\x00\x01 not xml"])
def test_hostile_or_foreign_documents_are_refused(body):
    with pytest.raises(SitemapRefused):
        parse_sitemap(body)


def test_a_gzip_bomb_stops_at_the_cap():
    bomb = gzip.compress(b"<" * (20 * 1024 * 1024))
    with pytest.raises(SitemapRefused, match="inflated"):
        inflate(bomb, 1024 * 1024)
    assert inflate(gzip.compress(b"small"), 100) == b"small"


def test_read_sitemaps_follows_indexes_keeps_scope_and_limit_and_skips_what_fails():
    site = "http://docs.example"
    files = {
        f"{site}/sitemap.xml": index(f"{site}/a.xml.gz", f"{site}/broken.xml", "http://elsewhere/x.xml"),
        f"{site}/a.xml.gz": gzip.compress(
            urlset(f"{site}/docs/one.html", f"{site}/docs/two.html", f"{site}/blog/out.html", "http://b/x")
        ),
        f"{site}/broken.xml": BOMB,
    }
    asked: list[str] = []

    def fetch(url: str) -> FetchedPage:
        asked.append(url)
        return FetchedPage(url, url, 200, "application/xml", files[url], None)

    scope = Scope(f"{site}/docs/")
    found = read_sitemaps(fetch, [f"{site}/sitemap.xml"], scope, limit=10, cap=1 << 20)
    assert [e.url for e in found] == [f"{site}/docs/one.html", f"{site}/docs/two.html"]
    assert "http://elsewhere/x.xml" not in asked
    assert len(read_sitemaps(fetch, [f"{site}/sitemap.xml"], scope, limit=1, cap=1 << 20)) == 1


def test_an_index_of_indexes_reads_at_most_max_files():
    count = 0

    def fetch(url: str) -> FetchedPage:
        nonlocal count
        count += 1
        body = index(f"http://a/{count}-1.xml", f"http://a/{count}-2.xml")
        return FetchedPage(url, url, 200, "application/xml", body, None)

    assert read_sitemaps(fetch, ["http://a/sitemap.xml"], Scope("http://a/"), limit=10, cap=1 << 20) == []
    assert count == MAX_FILES
