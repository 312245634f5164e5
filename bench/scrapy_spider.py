"""A plain Scrapy spider that extracts each page with ragcord's own extraction: a peer for bench/peers.py.

Scrapy's defaults (16 requests at once, 8 per site, its duplicate filter, robots.txt obeyed), ragcord's scope
rule (same origin, under the seed's path) and `workers.crawler.extract` on every HTML page; it keeps what
the extraction found (title, text size) so the work cannot be skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response

from ragcord.errors import ExtractionFailed
from ragcord.urls import Scope
from workers.crawler import FetchedPage, extract


class DocsSpider(scrapy.Spider):
    """Follows the links ragcord's extraction finds, within ragcord's scope of the seed."""

    name = "docs"

    def __init__(self, seed: str, results: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = [seed]
        self.scope = Scope(seed, (), ())
        self.results = results

    def parse(self, response: Response, **kwargs: Any) -> Iterator[scrapy.Request]:
        content_type = response.headers.get("Content-Type", b"").decode("latin-1")
        if "html" not in content_type:
            return
        mime, _, params = content_type.partition(";")  # the fetcher keeps the type and its charset apart
        charset = params.split("charset=", 1)[1].strip() if "charset=" in params else None
        page = FetchedPage(response.url, response.url, response.status, mime.strip(), response.body, charset)
        try:
            extracted = extract(page)
        except ExtractionFailed as exc:
            self.results.append({"url": response.url, "failed": str(exc)})
            links = exc.links
        else:
            self.results.append({"url": response.url, "title": extracted.title, "chars": len(extracted.text)})
            links = extracted.links
        for link in links:
            if self.scope.why_outside(link) is None:
                yield scrapy.Request(link, callback=self.parse)


def crawl(seed: str, max_pages: int) -> list[dict[str, Any]]:
    """Crawl from `seed` with Scrapy's defaults (at most `max_pages` responses); what each page yielded."""
    results: list[dict[str, Any]] = []
    process = CrawlerProcess(
        settings={
            "LOG_LEVEL": "WARNING",
            "TELNETCONSOLE_ENABLED": False,
            "ROBOTSTXT_OBEY": True,
            "CLOSESPIDER_PAGECOUNT": max_pages,
            "USER_AGENT": "ragcord-bench-scrapy",
        }
    )
    process.crawl(DocsSpider, seed=seed, results=results)
    process.start()
    return results
