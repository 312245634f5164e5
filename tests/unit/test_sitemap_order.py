"""The seed sends the sitemap pages changed since the knowledge base's copy first (lastmod), then the rest."""

from __future__ import annotations

from datetime import UTC, datetime

from ragcord.jobs import JobRecord, JobState
from ragcord.knowledge.pages import PageRecord
from ragcord.settings import Settings
from ragcord.urls import Scope
from workers.crawler import FetchedPage
from workers.pipeline import PageCrawler


def epoch(year: int) -> float:
    return datetime(year, 1, 1, tzinfo=UTC).timestamp()


SITEMAP = b"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>http://a/docs/same.html</loc><lastmod>2020-01-01</lastmod></url>
<url><loc>http://a/docs/new.html</loc><lastmod>2019-01-01</lastmod></url>
<url><loc>http://a/docs/old.html</loc><lastmod>2020-06-01</lastmod></url>
<url><loc>http://a/docs/undated.html</loc></url>
<url><loc>http://a/docs/</loc></url>
</urlset>"""


class Fetcher:
    def fetch(self, url, scope=None, *, html_only=True, max_bytes=None, **_):
        body = SITEMAP if url == "http://a/sitemap.xml" else b""
        return FetchedPage(url, url, 200, "application/xml", body, None)


class Robots:
    def allowed(self, url):
        return True

    def sitemaps(self, url):
        return []


class Jobs:
    def reserve_links(self, job_id, parent, urls):
        return list(urls)


class Pages:
    records = {
        "http://a/docs/same.html": PageRecord("http://a/docs/same.html", changed_at=epoch(2025)),
        "http://a/docs/old.html": PageRecord("http://a/docs/old.html", changed_at=epoch(2000)),
        "http://a/docs/undated.html": PageRecord("http://a/docs/undated.html", changed_at=epoch(2000)),
    }

    def get_many(self, kb, urls):
        return {u: self.records[u] for u in urls if u in self.records}


def test_changed_and_new_pages_come_first_newest_first_and_the_seed_is_not_sent_again():
    sent: list[tuple[str, int]] = []
    crawler = PageCrawler(
        Settings(_env_file=None),
        jobs=Jobs(),  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        embedder=None,  # type: ignore[arg-type]
        fetcher=Fetcher(),  # type: ignore[arg-type]
        robots=Robots(),  # type: ignore[arg-type]
        enqueue=lambda job_id, url, depth: sent.append((url, depth)),
        pages=Pages(),  # type: ignore[arg-type]
    )
    job = JobRecord("j", "kb", "http://a/docs/", JobState.RUNNING, max_pages=10, max_depth=3)
    crawler._seed_from_sitemaps(job, Scope(job.url), job.url)
    assert sent == [
        ("http://a/docs/old.html", 1),  # changed since the copy (2020-06 > 2000), newest first
        ("http://a/docs/new.html", 1),  # not in the knowledge base
        ("http://a/docs/same.html", 1),  # the copy is newer than its lastmod
        ("http://a/docs/undated.html", 1),  # no lastmod: the conditional request decides
    ]
