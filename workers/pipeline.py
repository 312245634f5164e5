"""One page of a crawl, start to finish: the logic behind the `crawl_page` actor.

Order matters for crash safety: children are reserved and enqueued *before* the page is counted
finished, so the job cannot end while a reserved page has no message; a redelivered page reserves
the same children again (reservations are per parent) and counts itself at most once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ragcord.errors import Blocked, Duplicate, FetchFailed, NotHtml, TooLarge, TransientFetchError
from ragcord.jobs import JobRecord, JobStore, PageOutcome
from ragcord.knowledge.chunking import chunk_id, chunk_markdown, content_hash
from ragcord.knowledge.embedders import Embedder
from ragcord.knowledge.stores import Store, StoredChunk
from ragcord.settings import Settings
from ragcord.urls import Scope
from workers.crawler import Fetcher, RobotsCache, extract

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str, int], None]  # (job_id, url, depth)


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
    ) -> None:
        self.settings = settings
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

        extracted = extract(page)
        redirected = f" (redirected to {page.url})" if page.url != url else ""
        if not extracted.markdown:
            result = PageResult(PageOutcome.SKIPPED, f"no text could be extracted{redirected}")
        else:
            owner = self.jobs.claim_content(job.id, page.url, content_hash(extracted.markdown))
            if owner != page.url:
                result = PageResult(PageOutcome.SKIPPED, f"duplicate of {owner}")
            else:
                chunks = self._store_page(job.knowledge_base, page.url, extracted.title, extracted.markdown)
                result = PageResult(PageOutcome.INDEXED, f"{extracted.title}{redirected}", chunks)

        if depth < job.max_depth:
            links = [link for link in extracted.links if scope.why_outside(link) is None]
            for child in self.jobs.reserve_links(job.id, url, links):
                self.enqueue(job.id, child, depth + 1)
        return result

    def _store_page(self, kb: str, url: str, title: str, markdown: str) -> int:
        chunks = chunk_markdown(markdown, max_words=self.settings.chunk_words)
        page_hash = content_hash(markdown)
        texts = [f"{title}\n{c.heading}\n{c.text}" if c.heading else f"{title}\n{c.text}" for c in chunks]
        vectors = self.embedder.embed(texts)
        now = time.time()
        stored = [
            StoredChunk(
                id=chunk_id(url, c.index),
                url=url,
                title=title,
                heading=c.heading,
                chunk_index=c.index,
                text=c.text,
                content_hash=page_hash,
                indexed_at=now,
                vector=vector,
            )
            for c, vector in zip(chunks, vectors, strict=True)
        ]
        self.store.replace_page(kb, url, stored)
        return len(stored)


def build_page_crawler(services, enqueue: Enqueue) -> PageCrawler:
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
    )
