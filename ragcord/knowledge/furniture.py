"""Site furniture: a block that recurs on most pages of one crawl's site is not content, whatever its words.

SQLite's tagline ("Small. Fast. Reliable. Choose any three.") was a chunk of its own on 31 of 49 pages, a
site-wide table of contents was indexed as content on every page. Each crawl counts, in Redis, on how many
of its pages each block (a paragraph, list or code block of a section, compared by its normalised text)
occurs once. Chrome occurs once a page; a label ("Note", "Parameters") or an API entry's line ("This
function is available since SDL 2.0.0.") recurs within pages, so such blocks are not counted on them.
Once FURNITURE_MIN_PAGES pages are counted, a page's blocks held by at least FURNITURE_SHARE of them are
left out before chunking. Pages indexed before a block crossed that line kept it: their chunks made only of
blocks that recur are remembered, and at the crawl's end those made only of furniture are removed.

Keys (P = prefix, J = job id; `JobKeys.furniture`): P:job:{J}:blocks hash (block hash -> pages holding
it), P:job:{J}:block-pages set (urls counted), P:job:{J}:block-chunks hash ("url\\tindex" -> the chunk's
block hashes). The crawl's end deletes them; else they expire `ttl_seconds` after the last page.

A re-crawl reads only the pages that changed, often fewer than FURNITURE_MIN_PAGES: what a crawl that counted
enough pages found is kept per source (its seed URL) in P:kb:{KB}:furniture (hash: source -> block hashes,
`pages.furniture_key`, dropped with the knowledge base), and a later crawl of that source leaves those blocks
out from its first page.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import redis

from ragcord.jobs.keys import JobKeys
from ragcord.knowledge.chunking import Section, blocks
from ragcord.knowledge.pages import furniture_key
from ragcord.knowledge.stores import Store
from ragcord.lua import script_source
from ragcord.redisconn import reply_text

log = logging.getLogger(__name__)

_KNOWN_CACHED = 16  # crawls whose source's known furniture a process keeps in memory (read once a crawl)

# A block held once by at least this share of a crawl's counted pages ("most pages") is furniture, once
# FURNITURE_MIN_PAGES pages are counted: a crawl's first pages are often one subtree's, which share lines.
# Chosen on the 9 quality-suite sites, each crawl's pages in 200 random orders (docs/quality-log.md,
# 2026-12-07): with 20 pages and a half, no block of theirs is ever left out; with 10 pages, SDL's
# `#include "SDL_stdinc.h" ...` line (6 of 13 header pages) was in 55% of the orders, Python's "Footnotes"
# label in 23%.
FURNITURE_SHARE = 0.5
FURNITURE_MIN_PAGES = 20
# A page's blocks are hashed to count them, again to leave its furniture out, and a third time in its chunks
# to remember those that may become furniture: twice from this cache. Recurring blocks are found in it from
# page to page too. (150 of Python's library pages: 2.8 -> 1.7 CPU-ms a page for the block hashes and the
# chunks' fingerprints with `copies._FINGERPRINTS_CACHED`, measured on a busy machine.)
_BLOCK_HASHES_CACHED = 8192
# How many fields an HSCAN of the crawl's end reads per round trip (Redis's default, 10, took 4925 round
# trips over 51,200 fields at the end of a crawl of Python's docs: 0.32 CPU-s, 0.12 with 1000).
_SCAN_COUNT = 1000


@functools.lru_cache(maxsize=_BLOCK_HASHES_CACHED)
def block_hash(block: str) -> str:
    """The same for blocks that differ only in case and whitespace."""
    return hashlib.blake2b(" ".join(block.lower().split()).encode(), digest_size=8).hexdigest()


def page_blocks(sections: Iterable[Section]) -> set[str]:
    """The hashes of the blocks the page holds once (a block it repeats is part of its own content)."""
    held = Counter(block_hash(b) for section in sections for b in blocks(section.text))
    return {h for h, n in held.items() if n == 1}


def is_furniture(pages_holding: int, pages: int) -> bool:
    return pages >= FURNITURE_MIN_PAGES and pages_holding >= FURNITURE_SHARE * pages


def without(sections: Iterable[Section], furniture: frozenset[str]) -> list[Section]:
    """The sections with their furniture blocks left out; a section left with nothing is dropped."""
    if not furniture:
        return list(sections)
    out: list[Section] = []
    for section in sections:
        parts = blocks(section.text)
        kept = [b for b in parts if block_hash(b) not in furniture]
        if len(kept) == len(parts):
            out.append(section)
        elif kept:
            out.append(Section(section.heading_path, section.anchor, "\n\n".join(kept)))
    return out


@dataclass(frozen=True)
class Counted:
    """A page's blocks once counted: which are furniture now, and which have occurred on other pages."""

    furniture: frozenset[str]
    recurring: frozenset[str]  # held by another page too, or any block while too few pages are counted


class FurnitureIndex:
    """The block counts of each crawl, in Redis."""

    def __init__(self, client: redis.Redis, *, prefix: str, ttl_seconds: int = 7 * 86400) -> None:
        self.client = client
        self.prefix = prefix
        self.keys = JobKeys(prefix)
        self.ttl_seconds = ttl_seconds
        self._count = client.register_script(script_source("ragcord.lua", "furniture/count.lua"))
        self._known: dict[str, frozenset[str]] = {}  # job id -> its source's furniture from earlier crawls

    def strip(
        self, job_id: str, url: str, sections: Sequence[Section], *, kb: str, source: str
    ) -> tuple[list[Section], Counted]:
        """Count the page's blocks, then its sections without the blocks that are furniture now (found by
        this crawl, or by an earlier crawl of its source)."""
        counted = self.count(job_id, url, page_blocks(sections), known=self.known(job_id, kb, source))
        return without(sections, counted.furniture), counted

    def known(self, job_id: str, kb: str, source: str) -> frozenset[str]:
        """The furniture an earlier crawl of `source` found, read once per crawl."""
        found = self._known.get(job_id)
        if found is None:
            raw = cast("bytes | None", self.client.hget(furniture_key(self.prefix, kb), source))
            found = frozenset(reply_text(raw).split()) if raw else frozenset()
            if len(self._known) >= _KNOWN_CACHED:
                self._known.pop(next(iter(self._known)))
            self._known[job_id] = found
        return found

    def count(
        self, job_id: str, url: str, hashes: set[str], *, known: frozenset[str] = frozenset()
    ) -> Counted:
        """Count the page's blocks (once per url, however often the page is retried)."""
        ordered = sorted(hashes)
        raw = self._count(keys=self.keys.furniture(job_id)[:2], args=[self.ttl_seconds, url, *ordered])
        pages, holding = int(raw[0]), [int(n) for n in raw[1:]]
        early = pages <= FURNITURE_MIN_PAGES
        counts = list(zip(ordered, holding, strict=True))
        return Counted(
            furniture=frozenset(h for h, n in counts if h in known or is_furniture(n, pages)),
            recurring=frozenset(h for h, n in counts if early or n > 1 or h in known),
        )

    def remember(
        self, job_id: str, url: str, chunks: Sequence[tuple[int, str]], recurring: frozenset[str]
    ) -> None:
        """The page's chunks made only of recurring blocks: furniture, should those blocks become it."""
        hashes = {index: {block_hash(b) for b in blocks(text)} for index, text in chunks}
        candidates = {index: found for index, found in hashes.items() if found and found <= recurring}
        if not candidates:
            return
        key = self.keys.furniture(job_id)[2]
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, mapping={f"{url}\t{i}": " ".join(sorted(found)) for i, found in candidates.items()})
        pipe.expire(key, self.ttl_seconds)
        pipe.execute()

    def sweep(self, job_id: str, store: Store, kb: str, *, source: str) -> int:
        """At the crawl's end: remove the chunks made only of furniture; keep what a crawl that counted
        enough pages found for the source's next crawls; forget the crawl's counts."""
        counts_key, pages_key, chunks_key = self.keys.furniture(job_id)
        pages = int(self.client.scard(pages_key))
        found = {
            reply_text(h)
            for h, n in self.client.hscan_iter(counts_key, count=_SCAN_COUNT)
            if is_furniture(int(n), pages)
        }
        furniture = found | self.known(job_id, kb, source)
        removed: dict[str, list[int]] = {}
        if furniture:
            for field, value in self.client.hscan_iter(chunks_key, count=_SCAN_COUNT):
                if set(reply_text(value).split()) <= furniture:
                    url, _, index = reply_text(field).rpartition("\t")
                    removed.setdefault(url, []).append(int(index))
        for url, indexes in removed.items():
            store.remove_chunks(kb, url, sorted(indexes))
        pipe = self.client.pipeline(transaction=False)
        if pages >= FURNITURE_MIN_PAGES:  # else too few pages were read to judge: earlier findings stand
            if found:
                pipe.hset(furniture_key(self.prefix, kb), source, " ".join(sorted(found)))
            else:
                pipe.hdel(furniture_key(self.prefix, kb), source)
        pipe.delete(counts_key, pages_key, chunks_key)
        pipe.execute()
        self._known.pop(job_id, None)
        total = sum(len(indexes) for indexes in removed.values())
        if total:
            log.info("job %s: %d furniture chunks removed from %d pages", job_id, total, len(removed))
        return total
