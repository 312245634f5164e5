"""One page of a crawl, start to finish: the logic behind the `crawl_page` actor.

Order matters for crash safety: children are reserved and enqueued *before* the page is counted
finished, so the job cannot end while a reserved page has no message; a redelivered page reserves
the same children again (reservations are per parent) and counts itself at most once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dramatiq
from dramatiq.middleware import CurrentMessage

from ragcord.bootstrap import Services
from ragcord.crawls import Enqueue, site_limit_of
from ragcord.errors import (
    Blocked,
    Duplicate,
    ExtractionFailed,
    FetchFailed,
    Gone,
    NotFound,
    NotHtml,
    TooLarge,
    TransientFetchError,
    UnreadableFile,
)
from ragcord.jobs import JobRecord, JobState, JobStore, PageOutcome, SitemapMode
from ragcord.knowledge.chunking import Chunk, Section, chunk_id, chunk_sections, content_hash
from ragcord.knowledge.copies import CopyIndex
from ragcord.knowledge.embedders import Embedder
from ragcord.knowledge.furniture import FurnitureIndex
from ragcord.knowledge.pages import PageRecord, PageRecords
from ragcord.knowledge.stores import Store, StoredChunk
from ragcord.settings import Settings
from ragcord.urls import Scope
from workers.actors import CrawlActors
from workers.batching import CoalescingEmbedder
from workers.crawler import ExtractedPage, FetchedPage, Fetcher, RetryLater, RobotsCache, extract
from workers.politeness import Lease, SiteLimiter, origin_of
from workers.render import Browser, Rendering
from workers.sitemaps import SitemapEntry, read_sitemaps
from workers.stagetimes import StageTimes, timed

log = logging.getLogger(__name__)

Defer = Callable[[str, str, int, int], None]
"""Puts a page back on the queue to run after a delay: (job_id, url, depth, delay_ms); not a retry."""

_POLL_SECONDS = 0.05  # how often a worker looks again for a busy site's slot, while it waits
_BUSY_POLL_SECONDS = 0.005  # the same within `site_busy_wait_seconds`, before a page is put back
_RESERVE_BATCH = 1000  # links reserved per call (one Lua call's arguments)
# How long a page is put back while another page of the crawl it waits for is still to do (a query URL its
# plain form, a twin the knowledge base's copy of its text): `_waiting_for`.
_WAIT_FOR_PAGE_MS = 1000
# The message that sweeps a job (its "url"): pages of the knowledge base the crawl did not reach, fetched
# directly. Not a URL any page can have; it is also the parent that reserves the pages it sends.
SWEEP = "ragcord:sweep"


class _Deferred(Exception):
    """The page is put back for `delay_ms`: every slot of its site stayed busy for `site_busy_wait_seconds`
    or its gate opens later than `site_wait_seconds`, or (`why`) it waits for another page of the crawl
    (`_waiting_for`)."""

    def __init__(self, delay_ms: int, why: str = "its site is busy") -> None:
        super().__init__(f"put back for {delay_ms} ms: {why}")
        self.delay_ms = delay_ms
        self.why = why


def _waiting_for(page: str, what: str = "") -> _Deferred:
    """The page is put back while the crawl still has `page` to do (jittered, so waiters spread out)."""
    return _Deferred(_WAIT_FOR_PAGE_MS + random.randint(0, 250), f"waits for {page}{what}")


@dataclass
class _Slot:
    """What the request made in a site's slot learned: a back-off the site asked for, its Crawl-delay."""

    backoff_ms: int = 0
    delay_ms: int | None = None


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
        limiter: SiteLimiter | None = None,
        defer: Defer | None = None,
        rendering: Rendering | None = None,
        times: StageTimes | None = None,
        pages: PageRecords | None = None,
        furniture: FurnitureIndex | None = None,
    ) -> None:
        self.settings = settings
        self.furniture = furniture  # None: a block every page repeats (a tagline, a footer) is indexed too
        # None: every crawl indexes every page (tests of other parts); else crawls are incremental.
        self.pages = pages
        self.rendering = rendering  # None: pages are read as served (no JavaScript rendering)
        self.times = times  # None: stages are not timed (the default; benchmarks and profiling set it)
        # None: no politeness across workers (tests of other parts); no `defer`: a busy site is waited for.
        self.limiter = limiter
        self.defer = defer
        self.copies = copies  # None: pages that copy others (a whole-manual edition) are indexed too
        self.jobs = jobs
        self.store = store
        self.embedder = embedder
        self.fetcher = fetcher
        self.robots = robots
        self.enqueue = enqueue

    def crawl_page(self, job_id: str, url: str, depth: int, *, final_attempt: bool = True) -> None:
        """Process one page. Raises only for a transient failure that should be retried."""
        if url == SWEEP:
            self._sweep(job_id)
            return
        verdict, record = self.jobs.begin_page(job_id, url)
        if verdict != "run":
            log.debug("page %s of job %s not run: %s", url, job_id, verdict)
            if verdict == "done" and self.pages is not None and self.jobs.sweep_running(job_id):
                # A redelivered last page: the worker that counted it may have died before sending the
                # sweep. Sending it again is safe (a sweep reserves only unreached pages, ends once).
                self.enqueue(job_id, SWEEP, 0)
            return
        job = JobRecord.from_fields(record)
        try:
            result = self._index(job, url, depth)
        except _Deferred as deferred:
            assert self.defer is not None  # only raised when there is one
            self.defer(job_id, url, depth, deferred.delay_ms)
            log.debug(
                "page %s of job %s put back for %d ms: %s", url, job_id, deferred.delay_ms, deferred.why
            )
            return
        except RetryLater as exc:
            if not final_attempt:
                if exc.retry_after is None:
                    raise
                # The site said when: the retry waits that long (the site's gate holds every worker off too).
                delay = max(int(exc.retry_after * 1000), self.settings.retry_backoff_ms)
                raise dramatiq.Retry(str(exc), delay=delay) from None
            result = PageResult(
                PageOutcome.FAILED,
                f"{exc} (after {self.settings.page_retries} retries){self._stale(job, url)}",
            )
        except TransientFetchError as exc:
            if not final_attempt:
                raise
            result = PageResult(
                PageOutcome.FAILED,
                f"{exc} (after {self.settings.page_retries} retries){self._stale(job, url)}",
            )
        except Exception as exc:
            if not final_attempt:
                log.warning("page %s of job %s failed, will retry: %r", url, job_id, exc)
                raise
            log.exception("page %s of job %s failed", url, job_id)
            result = PageResult(PageOutcome.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        finished = self.jobs.finish_page(
            job_id,
            url,
            result.outcome,
            result.detail,
            result.chunks,
            is_seed=(url == job.url),
            may_sweep=self.pages is not None,
        )
        if finished.sweep:
            self.enqueue(job_id, SWEEP, job.max_depth)
        self._ended(job, finished.final_state)

    def _ended(self, job: JobRecord, final_state: JobState | None) -> None:
        if final_state is not None:
            log.info("job %s ended %s", job.id, final_state.value)
            if self.furniture is not None:
                try:
                    self.furniture.sweep(job.id, self.store, job.knowledge_base, source=job.url)
                except Exception:
                    log.exception("removing the furniture of job %s failed: pages keep it", job.id)
            try:
                self.store.optimize(job.knowledge_base)
            except Exception:
                log.exception("optimizing knowledge base %s after job %s failed", job.knowledge_base, job.id)

    # -- incremental crawls ----------------------------------------------------------------------------

    def _record(self, job: JobRecord, url: str) -> PageRecord | None:
        """What the knowledge base knows of the page; None when it knows nothing or the crawl is `full`."""
        if self.pages is None or job.full:
            return None
        return self.pages.get(job.knowledge_base, url)

    def _stale(self, job: JobRecord, url: str) -> str:
        """What a failed page's event adds when the knowledge base keeps the copy it had (now stale)."""
        if self.pages is None or self.pages.get(job.knowledge_base, url) is None:
            return ""
        return "; the indexed copy is kept (stale)"

    def _gone(self, job: JobRecord, url: str, exc: Gone) -> PageResult:
        """404/410: the page leaves the knowledge base at once (when it was there)."""
        if self.pages is None:
            return PageResult(PageOutcome.FAILED, str(exc))
        kb = job.knowledge_base
        try:
            deleted = self.store.delete_source(kb, url)
        except NotFound:
            deleted = 0
        known = self.pages.delete(kb, url)  # after the store: a crash in between deletes again next time
        if not deleted and not known:
            return PageResult(PageOutcome.FAILED, str(exc))
        return PageResult(PageOutcome.REMOVED, f"{exc}: removed from the knowledge base ({deleted} chunks)")

    def _unchanged(
        self, job: JobRecord, scope: Scope, url: str, depth: int, record: PageRecord, page: FetchedPage
    ) -> PageResult:
        """A 304: nothing read, nothing embedded or written but the record; the page's links still lead on."""
        assert self.pages is not None
        self.pages.touch(
            job.knowledge_base,
            record,
            time.time(),
            etag=page.etag or record.etag,
            last_modified=page.last_modified or record.last_modified,
        )
        if record.text_hash:  # a copy of this page under another URL is still its duplicate
            self.jobs.claim_content(job.id, url, record.text_hash)
        self._follow(job, url, self._in_scope(scope, url, record.links), depth)
        return self._written_by_this_message(job, url, record) or PageResult(
            PageOutcome.UNCHANGED, "not modified (HTTP 304)"
        )

    def _seed_from_sitemaps(self, job: JobRecord, scope: Scope, seed: str) -> None:
        """The seed page sends the in-scope pages the site's sitemaps list (robots.txt's `Sitemap:` lines and
        /sitemap.xml), within max_pages: pages whose `lastmod` is newer than the knowledge base's copy (or
        that it does not have) first. Each is still fetched conditionally; a sitemap that fails is skipped."""
        starts = [*self.robots.sitemaps(seed), f"{origin_of(seed)}/sitemap.xml"]

        def fetch(url: str) -> FetchedPage:
            if not self.robots.allowed(url):
                raise Blocked("disallowed by robots.txt")
            with self._slot(job, url, self._crawl_delay_ms(url)):
                return self.fetcher.fetch(url, html_only=False, max_bytes=self.settings.max_page_bytes)

        entries = [
            e
            for e in read_sitemaps(
                fetch, starts, scope, limit=job.max_pages, cap=self.settings.max_page_bytes
            )
            if e.url != seed
        ]
        if not entries:
            return
        records = (
            self.pages.get_many(job.knowledge_base, [e.url for e in entries])
            if self.pages is not None and not job.full
            else {}
        )

        def changed(entry: SitemapEntry) -> bool:
            record = records.get(entry.url)
            return record is None or (entry.lastmod is not None and entry.lastmod > record.changed_at)

        ordered = sorted(entries, key=lambda e: (not changed(e), -(e.lastmod or 0.0)))
        log.info("job %s: %d pages from the sitemaps of %s", job.id, len(ordered), seed)
        urls = [e.url for e in ordered]
        for start in range(0, len(urls), _RESERVE_BATCH):
            for child in self.jobs.reserve_links(job.id, seed, urls[start : start + _RESERVE_BATCH]):
                self.enqueue(job.id, child, 1)

    def _sweep(self, job_id: str) -> None:
        """After a crawl that reached the end of its site: pages of the knowledge base within its scope it
        did not reach are sent as pages of their own (fetched directly, no link followed), so those the site
        no longer has are removed. Always ends the sweep, even when it fails (the job must end)."""
        job = None
        try:
            job = self.jobs.get(job_id)
            if self.pages is not None and job.state is JobState.RUNNING and not job.cancel_requested:
                scope = Scope(job.url, tuple(job.include_patterns), tuple(job.exclude_patterns))
                known = [u for u in self.pages.urls(job.knowledge_base) if scope.why_outside(u) is None]
                unreached = self.jobs.unreached(job_id, known)
                if unreached:
                    log.info("job %s: %d known pages not reached, fetched directly", job_id, len(unreached))
                for start in range(0, len(unreached), _RESERVE_BATCH):
                    for page in self.jobs.reserve_links(
                        job_id, SWEEP, unreached[start : start + _RESERVE_BATCH]
                    ):
                        self.enqueue(job_id, page, job.max_depth)
        except Exception:
            log.exception("the sweep of job %s failed: pages it did not reach are kept as they are", job_id)
        final_state = self.jobs.end_sweep(job_id)
        if job is not None:
            self._ended(job, final_state)

    def _index(self, job: JobRecord, url: str, depth: int) -> PageResult:
        scope = Scope(job.url, tuple(job.include_patterns), tuple(job.exclude_patterns))
        self._wait_for_plain_form(job, url)
        try:
            if not self._robots_allow(job, url):
                why = self.robots.why_refused(url)
                refused = f" (robots.txt itself was refused: {why})" if why else ""
                return PageResult(PageOutcome.SKIPPED, f"disallowed by robots.txt{refused}")
            if url == job.url and depth == 0 and job.sitemap is not SitemapMode.SKIP:
                try:
                    self._seed_from_sitemaps(job, scope, url)
                except _Deferred:
                    raise
                except Exception:  # the sitemaps are a bonus: the crawl goes on from the seed's links
                    log.exception("job %s: the sitemaps of %s could not be read", job.id, url)
            record = self._record(job, url)
            # (only when there are some: fetchers that never see a conditional request need not take them)
            conditional: dict[str, Any] = (
                {"validators": record.validators} if record and record.validators else {}
            )
            with self._slot(job, url, self._crawl_delay_ms(url)):
                page = self.fetcher.fetch(
                    url,
                    scope,
                    claim_redirect=lambda target: self.jobs.claim_redirect(job.id, url, target),
                    **conditional,
                )
        except Gone as exc:
            return self._gone(job, url, exc)
        except (Blocked, TooLarge, NotHtml, Duplicate) as exc:
            return PageResult(PageOutcome.SKIPPED, str(exc))
        except FetchFailed as exc:
            return PageResult(PageOutcome.FAILED, str(exc))
        if page.not_modified:
            if record is None:  # a site answering 304 to a request that asked nothing of the kind
                return PageResult(PageOutcome.FAILED, "HTTP 304 to an unconditional request")
            return self._unchanged(job, scope, url, depth, record, page)

        redirected = f" (redirected to {page.url})" if page.url != url else ""
        try:
            with self._stage("extract"):
                extracted = extract(page, self.settings)
        except ExtractionFailed as exc:
            self._follow(job, url, self._in_scope(scope, url, exc.links), depth)
            # A broken or encrypted PDF (an empty text file...) is the site's, like a page of another type.
            outcome = PageOutcome.SKIPPED if isinstance(exc, UnreadableFile) else PageOutcome.FAILED
            return PageResult(outcome, f"{exc}{redirected}")
        note = ""
        if self.rendering is not None:
            try:
                rendered = self.rendering.read(job, page, extracted)
            except (Blocked, TooLarge) as exc:
                return PageResult(PageOutcome.SKIPPED, f"{exc}{redirected}")
            except (FetchFailed, ExtractionFailed) as exc:
                return PageResult(PageOutcome.FAILED, f"{exc}{redirected}")
            page, extracted, note = rendered.page, rendered.extracted, rendered.note
        result = self._read(job, scope, url, depth, page, extracted, redirected, record)
        return dataclasses.replace(result, detail=result.detail + note) if note else result

    def _read(
        self,
        job: JobRecord,
        scope: Scope,
        url: str,
        depth: int,
        page: FetchedPage,
        extracted: ExtractedPage,
        redirected: str,
        record: PageRecord | None,
    ) -> PageResult:
        """`record`: what the knowledge base knew of `url` before its fetch (`_record`)."""
        canonical = extracted.canonical
        links = self._in_scope(scope, url, extracted.links)  # once: the record keeps them, the crawl follows
        cited = page.url
        if canonical and canonical not in (url, page.url) and _same_origin(canonical, page.url):
            if scope.why_outside(canonical) is None:
                # One page, one copy: the canonical URL is crawled (and cited) in its own right.
                for reserved in self.jobs.reserve_links(job.id, url, [canonical]):
                    self.enqueue(job.id, reserved, depth)
                self._follow(job, url, links, depth)
                return PageResult(PageOutcome.SKIPPED, f"duplicate of {canonical}")
            cited = canonical
        text = extracted.text
        if not text:
            notes = f" ({'; '.join(extracted.notes)})" if extracted.notes else ""
            result = PageResult(PageOutcome.SKIPPED, f"no text could be extracted{redirected}{notes}")
        else:
            text_hash = content_hash(text)
            if self.pages is not None and not job.full:
                known = self.pages.page_with_text(job.knowledge_base, text_hash)
                if known is not None and known != cited and scope.why_outside(known) is None:
                    # The knowledge base's own copy of this text keeps its place, whichever page of a
                    # re-crawl comes first: its twin under another URL stays a duplicate. Only a copy within
                    # this crawl's scope: the crawl reaches it (or its sweep does), so it is kept or
                    # removed by what the site says of it; a copy from another source (the site's old host)
                    # is not this crawl's to keep.
                    self._wait_for_the_kept_copy(job, url, known, depth)
                    self.jobs.claim_content(job.id, known, text_hash)
            owner = self.jobs.claim_content(job.id, cited, text_hash)
            if owner != cited:
                result = PageResult(PageOutcome.SKIPPED, f"duplicate of {owner}")
            else:
                # (the record read before the fetch is the cited page's unless a canonical URL differs)
                was = record if cited == url else self._record(job, cited)
                result = self._index_page(job, url, cited, page, extracted, redirected, text_hash, was, links)
        self._follow(job, url, links, depth)
        return result

    def _index_page(
        self,
        job: JobRecord,
        message_url: str,
        url: str,
        page: FetchedPage,
        extracted: ExtractedPage,
        redirected: str,
        text_hash: str,
        record: PageRecord | None,
        links: list[str],
    ) -> PageResult:
        """Store the page unless the knowledge base holds this very content; then record what was seen.
        `text_hash`: its text's content_hash, which the job's duplicate check claimed; `record`: `_record` of
        `url`; `links`: the page's links within the crawl's scope."""
        if self.pages is None:
            return self._store_page(job, url, extracted, redirected, text_hash)
        kb = job.knowledge_base
        fingerprint = page_fingerprint(extracted)
        validators = {"etag": page.etag, "last_modified": page.last_modified}
        now = time.time()
        if record is not None and record.content_hash == fingerprint:
            self.pages.touch(kb, record, now, links=links, text_hash=text_hash, **validators)
            return self._written_by_this_message(job, message_url, record) or PageResult(
                PageOutcome.UNCHANGED, f"content unchanged{redirected}"
            )
        result = self._store_page(job, url, extracted, redirected, text_hash)
        if result.outcome is not PageOutcome.INDEXED:
            return result
        # (a `full` crawl ignored what the knowledge base knew: whether it knew the page is asked now)
        known = record if record is not None or not job.full else self.pages.get(kb, url)
        outcome = PageOutcome.UPDATED if known is not None else PageOutcome.ADDED
        self.pages.put(
            kb,
            PageRecord(
                url,
                fingerprint,
                text_hash=text_hash,
                fetched_at=now,
                changed_at=now,
                indexed_at=now,
                links=links,
                written_by=_writer(job, message_url),
                written_as=outcome.value,
                **validators,
            ),
        )
        return dataclasses.replace(result, outcome=outcome)

    def _written_by_this_message(
        self, job: JobRecord, message_url: str, record: PageRecord
    ) -> PageResult | None:
        """The outcome this very message counted when its first run wrote the page, for a run that finds the
        page unchanged because that first run's worker died between the write and the count (the broker
        redelivered the message); None for any other page (another crawl's, or another message's: a
        redirect's target written by the page that redirected, which counted it)."""
        if record.written_by != _writer(job, message_url) or not record.written_as:
            return None
        chunks = self.store.get_source(job.knowledge_base, record.url).source.chunk_count
        return PageResult(PageOutcome(record.written_as), "indexed before its worker stopped", chunks)

    def _stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.times.stage(name) if self.times is not None else contextlib.nullcontext()

    def _wait_for_plain_form(self, job: JobRecord, url: str) -> None:
        """`page.html?ref=nav` waits while the crawl still has `page.html` to do.

        Two URLs serving one text are indexed once, under the first URL to claim it; without this, which one
        is cited depends on which worker ran first. Waiting lets the plain URL claim it whenever the crawl
        knows it, and costs a query URL that selects other content (`?page=2`) only that wait. The plain
        form never waits for anything, so this cannot deadlock.
        """
        if self.defer is None:
            return
        plain = urlunsplit(urlsplit(url)._replace(query=""))
        if plain != url and self.jobs.outstanding(job.id, plain):
            raise _waiting_for(plain)

    def _wait_for_the_kept_copy(self, job: JobRecord, url: str, kept: str, depth: int) -> None:
        """A twin of the knowledge base's copy (`kept`, another URL with this text) waits while the crawl has
        `kept` still to do, and sends it now when the crawl has not reached it yet.

        Skipped at once, the twin would be lost with `kept` when the site removed it: a page moved to a new
        URL is found there first and its old URL answers 404 only in the sweep, after the new one was
        skipped as its duplicate. Once `kept` is done, the twin runs again: a duplicate when `kept` still
        holds the text, indexed in its place when `kept` left. `kept` never waits for its twin (it is its
        own copy), so this cannot deadlock; past max_pages, when `kept` cannot be sent, the twin is skipped.
        """
        if self.defer is None:
            return
        reserved, done = self.jobs.progress(job.id, kept)
        if done:
            return
        if not reserved:
            sent = self.jobs.reserve_links(job.id, url, [kept])
            for page in sent:
                self.enqueue(job.id, page, depth)
            if not sent:
                return  # past max_pages: `kept` cannot be sent
        raise _waiting_for(kept, ", the knowledge base's copy of its text")

    def _follow(self, job: JobRecord, url: str, in_scope: list[str], depth: int) -> None:
        """Reserve and enqueue the page's in-scope links (`_in_scope`), before the page counts as finished.

        Only the first `max_links_per_page` links count, always the same ones, so a redelivered page
        re-enqueues exactly the children it reserved.
        """
        if depth >= job.max_depth or job.sitemap is SitemapMode.ONLY:
            return
        for start in range(0, len(in_scope), _RESERVE_BATCH):
            for child in self.jobs.reserve_links(job.id, url, in_scope[start : start + _RESERVE_BATCH]):
                self.enqueue(job.id, child, depth + 1)

    def _in_scope(self, scope: Scope, url: str, links: list[str]) -> list[str]:
        """The page's links the crawl may follow: the first `max_links_per_page`, those within its scope."""
        cap = self.settings.max_links_per_page
        if len(links) > cap:
            log.warning("%s has %d links: the first %d are considered", url, len(links), cap)
            links = links[:cap]
        return [link for link in links if scope.why_outside(link) is None]

    # -- politeness ------------------------------------------------------------------------------------

    def _robots_allow(self, job: JobRecord, url: str) -> bool:
        if self.limiter is None or self.robots.known(url):
            return self.robots.allowed(url)
        # Reading robots.txt is a request to the site too; its Crawl-delay spaces the ones after it.
        with self._slot(job, url) as slot:
            allowed = self.robots.allowed(url)
            slot.delay_ms = self._crawl_delay_ms(url)
        return allowed

    def _crawl_delay_ms(self, url: str) -> int | None:
        """The site's Crawl-delay (capped) once its robots.txt is read, else None."""
        if self.limiter is None or not self.robots.known(url):
            return None
        delay = self.robots.crawl_delay(url) or 0.0
        return int(min(delay, self.settings.max_crawl_delay_seconds) * 1000)

    @contextlib.contextmanager
    def _slot(self, job: JobRecord, url: str, delay_ms: int | None = None) -> Iterator[_Slot]:
        """One of the site's request slots for the block; a 429/503 inside closes the site for a while."""
        lease = None
        if self.limiter is not None:
            limit = site_limit_of(job.max_concurrent_requests, self.settings.max_concurrent_requests)
            lease = self._acquire(origin_of(url), limit, f"{job.id} {url}", delay_ms)
        slot = _Slot()
        try:
            yield slot
        except RetryLater as exc:
            wait = exc.retry_after if exc.retry_after is not None else self.settings.retry_backoff_ms / 1000
            slot.backoff_ms = int(wait * 1000)
            raise
        finally:
            if lease is not None and self.limiter is not None:
                self.limiter.release(lease, backoff_ms=slot.backoff_ms, delay_ms=slot.delay_ms)

    def _acquire(self, origin: str, limit: int, waiter: str, delay_ms: int | None) -> Lease:
        """A slot of the site. With `defer`, a thread waits on a busy site only briefly: when every slot
        stays taken for `site_busy_wait_seconds`, or the site's gate opens later than `site_wait_seconds`
        from now, the page is put back instead."""
        assert self.limiter is not None
        started = time.monotonic()
        give_up = started + self.settings.site_wait_seconds
        give_up_busy = started + self.settings.site_busy_wait_seconds
        while True:
            got = self.limiter.try_acquire(origin, limit=limit, delay_ms=delay_ms, waiter=waiter)
            if isinstance(got, Lease):
                return got
            if got.wait_ms is None:  # every slot busy: a slot frees when a request ends, whenever that is
                if self.defer is None:
                    time.sleep(_POLL_SECONDS * random.uniform(0.5, 1.5))
                elif time.monotonic() + _BUSY_POLL_SECONDS > give_up_busy:
                    raise _Deferred(int(got.back_ms * random.uniform(1.0, 1.2)))
                else:  # a request of a fast site ends in milliseconds: cheaper than a trip through the queue
                    time.sleep(_BUSY_POLL_SECONDS * random.uniform(0.5, 1.5))
                continue
            wait = got.wait_ms / 1000  # the gate opens then (Crawl-delay, Retry-After)
            if self.defer is not None and time.monotonic() + wait > give_up:
                raise _Deferred(got.wait_ms + random.randint(0, 250))
            time.sleep(min(wait, 1.0))

    def _store_page(
        self, job: JobRecord, url: str, page: ExtractedPage, redirected: str, page_hash: str
    ) -> PageResult:
        """`page_hash`: content_hash of the page's text (the chunks' content_hash)."""
        kb = job.knowledge_base
        counted = None
        if self.furniture is not None:
            sections, counted = self.furniture.strip(job.id, url, page.sections, kb=kb, source=job.url)
            page = dataclasses.replace(page, sections=sections)
        with self._stage("chunk"):
            chunks = self._chunks(page)
        detail = f"{page.title}{redirected}"
        if page.notes:  # what a capped reader left out (a PDF's pages past max_pdf_pages)
            detail += f" ({'; '.join(page.notes)})"
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
        if self.furniture is not None and counted is not None:
            self.furniture.remember(job.id, url, [(c.chunk_index, c.text) for c in stored], counted.recurring)
        return PageResult(PageOutcome.INDEXED, detail, len(stored))

    def _chunks(self, page: ExtractedPage) -> list[Chunk]:
        return page_chunks(page, self.embedder, self.settings)

    @staticmethod
    def embedded_text(title: str, chunk: Chunk) -> str:
        """What the embedder reads for a chunk: the page title and the section's headings give it context."""
        return f"{title}\n{chunk.heading}\n{chunk.text}" if chunk.heading else f"{title}\n{chunk.text}"


def page_chunks(page: ExtractedPage, embedder: Embedder, settings: Settings) -> list[Chunk]:
    """A page's chunks, each fitting the embedder's window whole with the title and headings embedded beside
    it; sized in words when the embedder has no window."""
    window = embedder.window
    if window is None:
        return chunk_sections(page.sections, max_tokens=settings.chunk_words)
    # Chunking counts the same texts several times (a block, then its pieces when packed): once is enough.
    # (Python's library pages: 1.11 -> 0.75 CPU-s for 60 pages, the same chunks.)
    count = functools.lru_cache(maxsize=4096)(embedder.count_tokens)
    title_tokens = count(page.title)

    def budget(section: Section) -> int:
        return window - 4 - title_tokens - (count(section.heading) if section.heading else 0)

    return chunk_sections(page.sections, max_tokens=settings.chunk_tokens, count_tokens=count, budget=budget)


def page_fingerprint(page: ExtractedPage) -> str:
    """A hash of everything a page's chunks are made of: its title and each section's headings, anchor and
    text. Equal fingerprints: the same chunks (for the same embedder and chunk settings)."""
    digest = hashlib.sha256(page.title.encode())
    for section in page.sections:
        for part in (*section.heading_path, section.anchor, section.text):
            digest.update(b"\x00" + part.encode())
        digest.update(b"\x01")
    return digest.hexdigest()[:32]


def _pages(urls: list[str]) -> str:
    """`a.html`, or `a.html and 3 other pages`, for a job event."""
    if len(urls) <= 1:
        return urls[0] if urls else "other pages"
    return f"{urls[0]} and {len(urls) - 1} other page{'s' if len(urls) > 2 else ''}"


def _writer(job: JobRecord, message_url: str) -> str:
    """What a page record keeps of the message that wrote its chunks (`PageRecord.written_by`)."""
    return f"{job.id} {message_url}"


def _same_origin(a: str, b: str) -> bool:
    first, second = urlsplit(a), urlsplit(b)
    return (first.scheme, first.netloc) == (second.scheme, second.netloc)


def defer_through(actors: CrawlActors) -> Defer:
    """A `Defer` that sends the page again with a delay, keeping the retries its message has used."""

    def defer(job_id: str, url: str, depth: int, delay_ms: int) -> None:
        message = CurrentMessage.get_current_message()
        retries = message.options.get("retries", 0) if message is not None else 0
        actors.crawl_page.send_with_options(args=(job_id, url, depth), delay=delay_ms, retries=retries)

    return defer


def build_page_crawler(
    services: Services, enqueue: Enqueue, defer: Defer | None = None, *, times: StageTimes | None = None
) -> PageCrawler:
    """A PageCrawler over the process's services, with its own HTTP client and robots.txt cache.

    Pages of a busy site are put back with `defer`; by default through the actors `enqueue` belongs to.
    With `times`, every call to a dependency is timed as its stage (workers/stagetimes.py).
    """
    settings = services.settings
    fetcher = Fetcher(settings)
    if defer is None and isinstance(actors := getattr(enqueue, "__self__", None), CrawlActors):
        defer = defer_through(actors)
    jobs, store, embedder = services.jobs, services.store, services.embedder
    if settings.embedder == "local":
        # The threads' pages go to the model together, one call at a time; a remote model keeps its calls.
        embedder = CoalescingEmbedder(embedder)
    robots = RobotsCache(fetcher)
    # The browser asks the crawler's own fetcher for everything a page loads (its guard, caps, deadline).
    rendering = Rendering(settings, Browser(settings, fetcher), first_warning=_first_warning(services))
    copies = CopyIndex(services.redis, prefix=settings.key_prefix)
    limiter = SiteLimiter(services.redis, prefix=settings.key_prefix)
    pages = PageRecords(services.redis, prefix=settings.key_prefix)
    furniture = FurnitureIndex(services.redis, prefix=settings.key_prefix)
    if times is not None:
        jobs = timed(jobs, times, "redis", _JOB_CALLS)
        store = timed(store, times, "store", ("replace_page", "remove_chunks", "optimize"))
        embedder = timed(embedder, times, "embed", ("embed",))
        fetcher = timed(fetcher, times, "fetch", ("fetch",))
        robots = timed(robots, times, "fetch", ("allowed",))
        copies = timed(copies, times, "redis", ("claim", "lost"))
        furniture = timed(furniture, times, "redis", ("strip", "remember"))
        limiter = timed(limiter, times, "redis", ("try_acquire", "release"))
        enqueue = _timed_enqueue(enqueue, times)
    return PageCrawler(
        settings,
        jobs=jobs,
        store=store,
        embedder=embedder,
        fetcher=fetcher,
        robots=robots,
        enqueue=enqueue,
        copies=copies,
        limiter=limiter,
        defer=defer,
        rendering=rendering,
        times=times,
        pages=pages,
        furniture=furniture,
    )


_JOB_CALLS = (
    "begin_page",
    "start_page",
    "get",
    "outstanding",
    "progress",
    "reserve_links",
    "claim_redirect",
    "claim_content",
    "finish_page",
)


def _timed_enqueue(enqueue: Enqueue, times: StageTimes) -> Enqueue:
    def timed_enqueue(job_id: str, url: str, depth: int) -> None:
        with times.stage("enqueue"):
            enqueue(job_id, url, depth)

    return timed_enqueue


def _first_warning(services: Services) -> Callable[[str], bool]:
    """True for the first page of a job told that rendering is unavailable (one event per job says so)."""

    def first(job_id: str) -> bool:
        return bool(services.jobs.redis.hsetnx(services.jobs.keys.job(job_id), "render_warned", 1))

    return first
