"""Starting a crawl: the validation every entry point (API, CLI, bot) shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Required, TypedDict, Unpack

from ragcord.errors import InvalidArgument
from ragcord.jobs import JobRecord, JobStore, RenderMode, SitemapMode
from ragcord.settings import Settings
from ragcord.urls import Resolver, Scope, check_address_allowed, parse_seed, validate_kb_name

DEFAULT_MAX_PAGES = 100
DEFAULT_MAX_DEPTH = 10
MAX_PAGES_LIMIT = 100_000
MAX_DEPTH_LIMIT = 100
MAX_CONCURRENT_LIMIT = 32
# The per-site request limit a crawl asked for, kept in the job's hash (JobRecord ignores the field).
SITE_LIMIT_FIELD = "max_concurrent_requests"

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
    """Validate, record the job and enqueue its seed page; never leaves a job without a message."""
    spec = validate_crawl(settings, **request)
    job = jobs.create(
        knowledge_base=spec.knowledge_base,
        url=spec.url,
        max_pages=spec.max_pages,
        max_depth=spec.max_depth,
        include_patterns=spec.include_patterns,
        exclude_patterns=spec.exclude_patterns,
        render=spec.render,
    )
    try:
        jobs.redis.hset(jobs.keys.job(job.id), SITE_LIMIT_FIELD, spec.max_concurrent_requests)
        # Incremental crawls (issue 22): read by the workers from the job's hash (JobRecord.full, .sitemap).
        jobs.redis.hset(
            jobs.keys.job(job.id), mapping={"full": "1" if spec.full else "0", "sitemap": spec.sitemap.value}
        )
        job = dataclasses.replace(job, full=spec.full, sitemap=spec.sitemap)
        enqueue(job.id, job.url, 0)
    except Exception:
        jobs.cancel(job.id)
        raise
    return job


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
