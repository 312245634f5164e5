"""Starting a crawl: the validation every entry point (API, CLI, bot) shares."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Required, TypedDict, Unpack

from ragcord.errors import FailedPrecondition, InvalidArgument
from ragcord.jobs import JobRecord, JobStore, RenderMode, SitemapMode
from ragcord.jobs.records import new_job_id
from ragcord.knowledge.records import KnowledgeBaseRecords, SourceRecord
from ragcord.settings import Settings
from ragcord.urls import Resolver, Scope, check_address_allowed, parse_seed, validate_kb_name

DEFAULT_MAX_PAGES = 100
DEFAULT_MAX_DEPTH = 10
MAX_PAGES_LIMIT = 100_000
MAX_DEPTH_LIMIT = 100
MAX_CONCURRENT_LIMIT = 32
# The per-site request limit a crawl asked for, kept in the job's hash (JobRecord ignores the field).
SITE_LIMIT_FIELD = "max_concurrent_requests"
# In the hash of each job a re-crawl started: the id of the re-crawl's first job, which names the batch
# (RecrawlKnowledgeBase and schedules; the bot posts one summary per batch: ragcord/updates.py).
RECRAWL_FIELD = "recrawl"

Enqueue = Callable[[str, str, int], None]
"""Sends one page of a crawl to the workers: (job_id, url, depth). Adapters pass the real one in."""

"""(host, port) -> the host's addresses; tests pass a fake one instead of DNS."""


class CrawlRequest(TypedDict, total=False):
    """What an entry point asks `start_crawl` for: `validate_crawl`'s keyword arguments."""

    url: Required[str]
    knowledge_base: Required[str]
    max_pages: int
    max_depth: int
    include_patterns: Sequence[str]
    exclude_patterns: Sequence[str]
    max_concurrent_requests: int
    render: RenderMode | str
    resolver: Resolver | None
    full: bool
    sitemap: SitemapMode | str


@dataclass(frozen=True)
class CrawlSpec:
    url: str
    knowledge_base: str
    max_pages: int
    max_depth: int
    include_patterns: tuple[str, ...]
    exclude_patterns: tuple[str, ...]
    max_concurrent_requests: int = 0
    render: RenderMode = RenderMode.AUTO
    full: bool = False
    sitemap: SitemapMode = SitemapMode.INCLUDE


def parse_sitemap_mode(mode: SitemapMode | str) -> SitemapMode:
    """`include`, `only` or `skip` (empty: include); InvalidArgument otherwise."""
    try:
        return SitemapMode(mode or SitemapMode.INCLUDE)
    except ValueError:
        raise InvalidArgument(
            f"sitemap {mode!r} is not one of include (sitemap URLs seed the crawl beside the links it "
            "follows), only (only the sitemap's URLs), skip"
        ) from None


def parse_render(render: RenderMode | str) -> RenderMode:
    """`auto`, `always` or `never` (empty: auto); InvalidArgument otherwise."""
    try:
        return RenderMode(render or RenderMode.AUTO)
    except ValueError:
        raise InvalidArgument(
            f"render {render!r} is not one of auto (render pages whose static HTML has no text but loads "
            "scripts), always, never"
        ) from None


def validate_crawl(
    settings: Settings,
    *,
    url: str,
    knowledge_base: str,
    max_pages: int = 0,
    max_depth: int = 0,
    include_patterns: Sequence[str] = (),
    exclude_patterns: Sequence[str] = (),
    max_concurrent_requests: int = 0,
    render: RenderMode | str = RenderMode.AUTO,
    resolver: Resolver | None = None,
    full: bool = False,
    sitemap: SitemapMode | str = SitemapMode.INCLUDE,
) -> CrawlSpec:
    """Raises InvalidArgument (malformed input) or PermissionDenied (a private address)."""
    seed = parse_seed(url)
    validate_kb_name(knowledge_base or "")
    if not 0 <= max_pages <= MAX_PAGES_LIMIT:
        raise InvalidArgument(f"max_pages must be between 1 and {MAX_PAGES_LIMIT} (0 = {DEFAULT_MAX_PAGES})")
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise InvalidArgument(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT} (0 = {DEFAULT_MAX_DEPTH})")
    if not 0 <= max_concurrent_requests <= MAX_CONCURRENT_LIMIT:
        raise InvalidArgument(
            f"max_concurrent_requests must be between 1 and {MAX_CONCURRENT_LIMIT} requests in flight to the "
            f"site at once (0 = the server's default, {settings.max_concurrent_requests})"
        )
    mode = parse_render(render)
    sitemap_mode = parse_sitemap_mode(sitemap)
    scope = Scope(seed, tuple(include_patterns), tuple(exclude_patterns))  # compiles the patterns
    kwargs = {"resolver": resolver} if resolver else {}
    check_address_allowed(seed, allow_private=settings.allow_private_networks, **kwargs)
    return CrawlSpec(
        url=seed,
        knowledge_base=knowledge_base,
        max_pages=max_pages or DEFAULT_MAX_PAGES,
        max_depth=max_depth or DEFAULT_MAX_DEPTH,
        include_patterns=scope.include,
        exclude_patterns=scope.exclude,
        max_concurrent_requests=max_concurrent_requests or settings.max_concurrent_requests,
        render=mode,
        full=full,
        sitemap=sitemap_mode,
    )


def start_crawl(
    settings: Settings, jobs: JobStore, enqueue: Enqueue, **request: Unpack[CrawlRequest]
) -> JobRecord:
    """Validate, record the job and enqueue its seed page; never leaves a job without a message.

    The crawl becomes (or updates) a source of its knowledge base. Aborted, naming the running job, while
    another crawl into the same knowledge base has not ended."""
    spec = validate_crawl(settings, **request)
    return start_crawls(jobs, enqueue, [spec])[0]


def start_crawls(
    jobs: JobStore, enqueue: Enqueue, specs: Sequence[CrawlSpec], *, recrawl: bool = False
) -> list[JobRecord]:
    """Starts one job per spec, all into one knowledge base, once no crawl into it is running (the claim
    is atomic: of two concurrent callers one gets Aborted). Each spec is remembered as a source.
    `recrawl`: the jobs are one re-crawl, marked with RECRAWL_FIELD."""
    if not specs:
        return []
    kb = specs[0].knowledge_base
    if any(spec.knowledge_base != kb for spec in specs):
        raise ValueError("start_crawls starts crawls into one knowledge base")
    records = KnowledgeBaseRecords(jobs.redis, prefix=jobs.keys.prefix)
    ids = [new_job_id() for _ in specs]
    records.claim_crawls(kb, ids, jobs)
    started: list[JobRecord] = []
    try:
        for job_id, spec in zip(ids, specs, strict=True):
            started.append(_start_one(jobs, enqueue, spec, job_id, batch=ids[0] if recrawl else ""))
            records.remember_source(kb, source_of(spec, job_id))
    except Exception:
        records.release_crawls(kb, ids[len(started) :])
        for job in started[:-1]:  # (the failing one, if created, was cancelled by _start_one)
            jobs.cancel(job.id)
        raise
    return started


def _start_one(jobs: JobStore, enqueue: Enqueue, spec: CrawlSpec, job_id: str, *, batch: str) -> JobRecord:
    job = jobs.create(
        knowledge_base=spec.knowledge_base,
        url=spec.url,
        max_pages=spec.max_pages,
        max_depth=spec.max_depth,
        include_patterns=spec.include_patterns,
        exclude_patterns=spec.exclude_patterns,
        render=spec.render,
        job_id=job_id,
    )
    try:
        # Read by the workers from the job's hash: the site limit, and for incremental crawls (issue 22)
        # JobRecord.full and .sitemap; a re-crawl's batch id.
        jobs.redis.hset(
            jobs.keys.job(job.id),
            mapping={
                SITE_LIMIT_FIELD: spec.max_concurrent_requests,
                "full": "1" if spec.full else "0",
                "sitemap": spec.sitemap.value,
                **({RECRAWL_FIELD: batch} if batch else {}),
            },
        )
        job = dataclasses.replace(job, full=spec.full, sitemap=spec.sitemap)
        enqueue(job.id, job.url, 0)
    except Exception:
        jobs.cancel(job.id)
        raise
    return job


_SOURCE_FIELDS = {"url", "knowledge_base", "include_patterns", "exclude_patterns", "max_pages", "max_depth"}
_SOURCE_FIELDS |= {"max_concurrent_requests", "render"}
# A one-off choice of that crawl: the re-crawls of a source stay incremental.
_NOT_REMEMBERED = {"full"}


def source_of(spec: CrawlSpec, job_id: str) -> SourceRecord:
    """The source a crawl makes of its seed: every option of its spec, for the re-crawls."""
    options = {
        f.name: _plain(getattr(spec, f.name))
        for f in dataclasses.fields(spec)
        if f.name not in _SOURCE_FIELDS and f.name not in _NOT_REMEMBERED
    }
    return SourceRecord(
        url=spec.url,
        include_patterns=list(spec.include_patterns),
        exclude_patterns=list(spec.exclude_patterns),
        max_pages=spec.max_pages,
        max_depth=spec.max_depth,
        max_concurrent_requests=spec.max_concurrent_requests,
        render=spec.render.value,
        options=options,
        last_job_id=job_id,
    )


def _plain(value: object) -> object:
    """A spec's value as JSON keeps it (an enum as its value, a tuple as a list)."""
    if isinstance(value, enum.Enum):
        return value.value
    return list(value) if isinstance(value, tuple) else value


def recrawl_knowledge_base(
    settings: Settings,
    jobs: JobStore,
    enqueue: Enqueue,
    knowledge_base: str,
    *,
    resolver: Resolver | None = None,
) -> list[JobRecord]:
    """Crawls every source of the knowledge base again with its stored scope and limits, one job per source.
    FailedPrecondition when it has no source; Aborted while a crawl into it runs."""
    validate_kb_name(knowledge_base)
    records = KnowledgeBaseRecords(jobs.redis, prefix=jobs.keys.prefix)
    sources = records.sources(knowledge_base)
    if not sources:
        raise FailedPrecondition(
            f"knowledge base {knowledge_base!r} has no sources to re-crawl; StartCrawl adds one"
        )
    specs = [
        validate_crawl(
            settings,
            url=s.url,
            knowledge_base=knowledge_base,
            max_pages=s.max_pages,
            max_depth=s.max_depth,
            include_patterns=s.include_patterns,
            exclude_patterns=s.exclude_patterns,
            max_concurrent_requests=s.max_concurrent_requests,
            render=s.render,
            resolver=resolver,
            **s.options,
        )
        for s in sources
    ]
    return start_crawls(jobs, enqueue, specs, recrawl=True)


def site_limit(jobs: JobStore, job_id: str, default: int) -> int:
    """The requests in flight to the site at once that the crawl `job_id` allows (`default` when unset)."""
    return site_limit_of(jobs.redis.hget(jobs.keys.job(job_id), SITE_LIMIT_FIELD), default)


def site_limit_of(raw: bytes | str | int | None, default: int) -> int:
    """The limit a job's hash holds in SITE_LIMIT_FIELD (`raw`), or `default` when unset or invalid."""
    try:
        value = int(raw) if raw else 0
    except (TypeError, ValueError):
        value = 0
    return value if 1 <= value <= MAX_CONCURRENT_LIMIT else default
