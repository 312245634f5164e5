"""Sitemaps (sitemaps.org): the URLs a site lists, from robots.txt `Sitemap:` lines and /sitemap.xml.

Read as hostile input: a sitemap never needs a DTD, so any document declaring one (the XML bomb's entities,
external entities) is refused before parsing, and lxml parses with entities unresolved, no network, no DTD
loading and its default tree limits. Bodies are capped like pages (the fetcher's cap, and the same cap for a
gzip file once inflated); an index's children are followed up to `MAX_FILES` files in all.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from lxml import etree

from ragcord.errors import CrawlError
from ragcord.urls import Scope, normalize_url
from workers.crawler import FetchedPage

__all__ = ["MAX_FILES", "SitemapEntry", "SitemapRefused", "parse_sitemap", "read_sitemaps"]

log = logging.getLogger(__name__)

MAX_FILES = 50  # sitemap files read for one crawl, an index's children included
_GZIP_MAGIC = b"\x1f\x8b"


class SitemapRefused(Exception):
    """The sitemap is refused: a DTD or entities, too large once inflated, or not a sitemap."""


@dataclass(frozen=True)
class SitemapEntry:
    url: str
    lastmod: float | None = None  # epoch seconds, when the sitemap says


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _lastmod(value: str | None) -> float | None:
    """A W3C datetime (`2024-05-01`, `2024-05-01T10:00:00+00:00`, `...Z`) in epoch seconds, or None."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def inflate(body: bytes, cap: int) -> bytes:
    """A gzip body inflated to at most `cap` bytes; SitemapRefused beyond (a gzip bomb stops at the cap)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, cap + 1)
    except zlib.error as exc:
        raise SitemapRefused(f"corrupt gzip: {exc}") from None
    if len(out) > cap or inflater.unconsumed_tail:
        raise SitemapRefused(f"over {cap} bytes once inflated")
    return out


def parse_sitemap(body: bytes) -> tuple[list[SitemapEntry], list[str]]:
    """(the pages a `<urlset>` lists, the sitemaps a `<sitemapindex>` lists); SitemapRefused otherwise."""
    head = body[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in body.upper():
        raise SitemapRefused("it declares a DTD or entities, which no sitemap needs")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise SitemapRefused(f"not XML: {exc}") from None
    kind = _local(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        raise SitemapRefused(f"not a sitemap (its root is <{kind}>)")
    entries: list[SitemapEntry] = []
    children: list[str] = []
    for item in root:
        fields = {_local(child.tag): (child.text or "").strip() for child in item}
        loc = fields.get("loc", "")
        if not loc:
            continue
        if kind == "sitemapindex":
            children.append(loc)
        else:
            entries.append(SitemapEntry(loc, _lastmod(fields.get("lastmod"))))
    return entries, children


def read_sitemaps(
    fetch: Callable[[str], FetchedPage], starts: Iterable[str], scope: Scope, *, limit: int, cap: int
) -> list[SitemapEntry]:
    """The in-scope pages the sitemaps at `starts` list (indexes followed, gzip inflated), at most `limit`,
    each once. Only sitemaps of the scope's own origin are read; one that fails or is refused is skipped."""
    origin = _origin(scope.seed)
    queue = list(dict.fromkeys(starts))
    read: set[str] = set()
    found: dict[str, SitemapEntry] = {}
    while queue and len(read) < MAX_FILES and len(found) < limit:
        url = queue.pop(0)
        if url in read or _origin(url) != origin:
            continue
        read.add(url)
        try:
            body = fetch(url).body
            if body[:2] == _GZIP_MAGIC:
                body = inflate(body, cap)
            entries, children = parse_sitemap(body)
        except (CrawlError, SitemapRefused) as exc:
            log.info("sitemap %s not read: %s", url, exc)
            continue
        queue += [child for child in children if child not in read]
        for entry in entries:
            try:
                page = normalize_url(entry.url)
            except ValueError:
                continue
            if page not in found and scope.why_outside(page) is None:
                found[page] = SitemapEntry(page, entry.lastmod)
                if len(found) >= limit:
                    break
    return list(found.values())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
