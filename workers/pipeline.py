"""One page of a crawl, start to finish: the logic behind the `crawl_page` actor.

Order matters for crash safety: children are reserved and enqueued *before* the page is counted
finished, so the job cannot end while a reserved page has no message; a redelivered page reserves
the same children again (reservations are per parent) and counts itself at most once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ragcord.bootstrap import Services
from ragcord.crawls import Enqueue
from ragcord.errors import (
    Blocked,
    Duplicate,
    ExtractionFailed,
    FetchFailed,
    NotHtml,
    TooLarge,
    TransientFetchError,
)
from ragcord.jobs import JobRecord, JobStore, PageOutcome
from ragcord.knowledge.chunking import Chunk, Section, chunk_id, chunk_sections, content_hash
from ragcord.knowledge.copies import CopyIndex
from ragcord.knowledge.embedders import Embedder
from ragcord.knowledge.stores import Store, StoredChunk
from ragcord.settings import Settings
from ragcord.urls import Scope
from workers.crawler import ExtractedPage, Fetcher, RobotsCache, extract

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageResult:
    outcome: PageOutcome
    detail: str
    chunks: int = 0


class PageCrawler:
    def __init__(
        self,
        settings: Settings,
        *,
        jobs: JobStore,
        store: Store,
        embedder: Embedder,
        fetcher: Fetcher,
        robots: RobotsCache,
        enqueue: Enqueue,
        copies: CopyIndex | None = None,
    ) -> None:
        self.settings = settings
        self.copies = copies  # None: pages that copy others (a whole-manual edition) are indexed too
        self.jobs = jobs
        self.store = store
        self.embedder = embedder
        self.fetcher = fetcher
        self.robots = robots
        self.enqueue = enqueue

    def crawl_page(self, job_id: str, url: str, depth: int, *, final_attempt: bool = True) -> None:
        """Process one page. Raises only for a transient failure that should be retried."""
        verdict = self.jobs.start_page(job_id, url)
        if verdict != "run":
            log.debug("page %s of job %s not run: %s", url, job_id, verdict)
            return
        job = self.jobs.get(job_id)
        try:
            result = self._index(job, url, depth)
        except TransientFetchError as exc:
            if not final_attempt:
                raise
            result = PageResult(PageOutcome.FAILED, f"{exc} (after {self.settings.page_retries} retries)")
        except Exception as exc:
            if not final_attempt:
                log.warning("page %s of job %s failed, will retry: %r", url, job_id, exc)
                raise
            log.exception("page %s of job %s failed", url, job_id)
            result = PageResult(PageOutcome.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        finished = self.jobs.finish_page(
            job_id, url, result.outcome, result.detail, result.chunks, is_seed=(url == job.url)
        )
        if finished.final_state is not None:
            log.info("job %s ended %s", job_id, finished.final_state.value)
            try:
                self.store.optimize(job.knowledge_base)
            except Exception:
                log.exception("optimizing knowledge base %s after job %s failed", job.knowledge_base, job_id)

    def _index(self, job: JobRecord, url: str, depth: int) -> PageResult:
        scope = Scope(job.url, tuple(job.include_patterns), tuple(job.exclude_patterns))
        try:
            if not self.robots.allowed(url):
                return PageResult(PageOutcome.SKIPPED, "disallowed by robots.txt")
            page = self.fetcher.fetch(
                url, scope, claim_redirect=lambda target: self.jobs.claim_redirect(job.id, url, target)
            )
        except (Blocked, TooLarge, NotHtml, Duplicate) as exc:
            return PageResult(PageOutcome.SKIPPED, str(exc))
        except FetchFailed as exc:
            return PageResult(PageOutcome.FAILED, str(exc))

        redirected = f" (redirected to {page.url})" if page.url != url else ""
        try:
            extracted = extract(page)
        except ExtractionFailed as exc:
            self._follow(job, scope, url, exc.links, depth)
            return PageResult(PageOutcome.FAILED, f"{exc}{redirected}")

        canonical = extracted.canonical
        cited = page.url
        if canonical and canonical not in (url, page.url) and _same_origin(canonical, page.url):
            if scope.why_outside(canonical) is None:
                # One page, one copy: the canonical URL is crawled (and cited) in its own right.
                for reserved in self.jobs.reserve_links(job.id, url, [canonical]):
                    self.enqueue(job.id, reserved, depth)
                self._follow(job, scope, url, extracted.links, depth)
                return PageResult(PageOutcome.SKIPPED, f"duplicate of {canonical}")
            cited = canonical
        text = extracted.text
        if not text:
            result = PageResult(PageOutcome.SKIPPED, f"no text could be extracted{redirected}")
        else:
            owner = self.jobs.claim_content(job.id, cited, content_hash(text))
            if owner != cited:
                result = PageResult(PageOutcome.SKIPPED, f"duplicate of {owner}")
            else:
                result = self._store_page(job, cited, extracted, redirected)
        self._follow(job, scope, url, extracted.links, depth)
        return result

    def _follow(self, job: JobRecord, scope: Scope, url: str, links: list[str], depth: int) -> None:
        """Reserve and enqueue the page's in-scope links (before the page counts as finished)."""
        if depth < job.max_depth:
            in_scope = [link for link in links if scope.why_outside(link) is None]
            for child in self.jobs.reserve_links(job.id, url, in_scope):
                self.enqueue(job.id, child, depth + 1)

    def _store_page(self, job: JobRecord, url: str, page: ExtractedPage, redirected: str) -> PageResult:
        kb = job.knowledge_base
        chunks = self._chunks(page)
        detail = f"{page.title}{redirected}"
        verdict = None
        if self.copies is not None and chunks:
            verdict = self.copies.claim(job.id, url, [c.text for c in chunks], [c.index for c in chunks])
            if verdict.skip:
                return PageResult(PageOutcome.SKIPPED, f"copies {_pages(verdict.copies)}{redirected}")
            if verdict.left_out:
                kept = set(verdict.keep)
                detail += (
                    f" ({verdict.left_out} of {len(chunks)} chunks repeat {_pages(verdict.copies)}: left out)"
                )
                chunks = [c for position, c in enumerate(chunks) if position in kept]
        page_hash = content_hash(page.text)
        title = page.title
        texts = [self.embedded_text(title, c) for c in chunks]
        vectors = self.embedder.embed(texts)
        now = time.time()
        stored = [
            StoredChunk(
                id=chunk_id(url, c.index),
                url=url,
                title=title,
                heading=c.heading,
                anchor=c.anchor,
                chunk_index=c.index,
                text=c.text,
                content_hash=page_hash,
                indexed_at=now,
                vector=vector,
            )
            for c, vector in zip(chunks, vectors, strict=True)
        ]
        self.store.replace_page(kb, url, stored)
        # Only now that this page serves its chunks are they removed from the whole-manual copy holding them.
        for copy_url, indexes in (verdict.taken if verdict is not None else {}).items():
            self.store.remove_chunks(kb, copy_url, indexes)
            log.info("%s: %d chunks of %s repeat it; removed from there", url, len(indexes), copy_url)
        if self.copies is not None and stored:
            # A section page may have taken some while this one was embedded: its removal came too early.
            lost = self.copies.lost(job.id, url, [c.text for c in stored], [c.chunk_index for c in stored])
            if lost:
                self.store.remove_chunks(kb, url, lost)
                gone = set(lost)
                stored = [c for c in stored if c.chunk_index not in gone]
        return PageResult(PageOutcome.INDEXED, detail, len(stored))

    def _chunks(self, page: ExtractedPage) -> list[Chunk]:
        """Chunks that fit the embedder's window whole, with the title and headings embedded beside them."""
        window = self.embedder.window
        if window is None:
            return chunk_sections(page.sections, max_tokens=self.settings.chunk_words)
        count = self.embedder.count_tokens
        title_tokens = count(page.title)

        def budget(section: Section) -> int:
            return window - 4 - title_tokens - (count(section.heading) if section.heading else 0)

        return chunk_sections(
            page.sections, max_tokens=self.settings.chunk_tokens, count_tokens=count, budget=budget
        )

    @staticmethod
    def embedded_text(title: str, chunk: Chunk) -> str:
        """What the embedder reads for a chunk: the page title and the section's headings give it context."""
        return f"{title}\n{chunk.heading}\n{chunk.text}" if chunk.heading else f"{title}\n{chunk.text}"


def _pages(urls: list[str]) -> str:
    """`a.html`, or `a.html and 3 other pages`, for a job event."""
    if len(urls) <= 1:
        return urls[0] if urls else "other pages"
    return f"{urls[0]} and {len(urls) - 1} other page{'s' if len(urls) > 2 else ''}"


def _same_origin(a: str, b: str) -> bool:
    first, second = urlsplit(a), urlsplit(b)
    return (first.scheme, first.netloc) == (second.scheme, second.netloc)


def build_page_crawler(services: Services, enqueue: Enqueue) -> PageCrawler:
    """A PageCrawler over the process's services, with its own HTTP client and robots.txt cache."""
    fetcher = Fetcher(services.settings)
    return PageCrawler(
        services.settings,
        jobs=services.jobs,
        store=services.store,
        embedder=services.embedder,
        fetcher=fetcher,
        robots=RobotsCache(fetcher),
        enqueue=enqueue,
        copies=CopyIndex(services.redis, prefix=services.settings.key_prefix),
    )
