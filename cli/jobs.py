"""Crawl jobs through the admin API: `crawl`, `watch` (a live progress bar), `cancel` and `jobs`."""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column as TableColumn

from cli.admin import Admin, local_time
from cli.console import Column, console, print_listing
from ragcord.errors import RagcordError
from ragcord.settings import Settings

MAX_RECONNECTS = 30  # in a row without an event; then the error reaches the user
MAX_RECONNECT_DELAY_SECONDS = 5.0
REASONS_SHOWN = 8  # reason groups per outcome in the summary; --verbose lists every page as well
PLAIN_LINE_SECONDS = 10.0  # into a pipe or a log, no bar: a progress line at most this often
JOBS_HINT = "`ragcord jobs` (ListJobs) shows the jobs"

JOB_COLUMNS = [
    Column("id", min_width=16),
    Column("state", min_width=9),
    Column("kb", min_width=6, ratio=1, fold=True),
    Column("url", min_width=16, ratio=3, fold=True),
    Column("done", justify="right"),
    Column("skipped", justify="right", needs_width=110),
    Column("failed", justify="right", needs_width=110),
    Column("chunks", justify="right"),
    Column("created", needs_width=130),
]


class StreamEnded(RuntimeError):
    """The event stream closed before the job's terminal event (a restarted server): reconnect."""


class JobNotFound(RagcordError):
    """The job id names no job: said before anything is drawn, with where the ids are."""


@dataclass
class Outcomes:
    """The pages a watch saw skipped or failed, with why, for the summary."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def follow_job(admin: Admin, job_id: str, *, quiet: bool = False, verbose: bool = False) -> int:
    """Watch a job to its end with a progress bar; reconnects with the last cursor if the stream drops."""
    check_job(admin, job_id)
    # One line at any width: the counts take what is left and a narrow terminal cuts them short.
    columns = [
        TextColumn("[bold]{task.description}", table_column=TableColumn(no_wrap=True, min_width=9)),
        BarColumn(bar_width=12, table_column=TableColumn(min_width=12)),
        TextColumn("{task.fields[counts]}", table_column=TableColumn(no_wrap=True, ratio=1)),
        TimeElapsedColumn(table_column=TableColumn(no_wrap=True, min_width=7)),
    ]
    bar = console.is_terminal and not quiet  # redrawn in place: only a terminal can show that
    with Progress(*columns, console=console, transient=False, disable=not bar, expand=True) as progress:
        watch = Watch(admin, job_id, progress, plain=not bar and not quiet)
        final = watch.run()
    for line in summary(admin, final, watch.outcomes, verbose=verbose):
        console.print(line, markup=False, soft_wrap=True)
    return 0 if final.state == admin.pb.JOB_STATE_SUCCEEDED else 1


class Watch:
    """One `watch`: the stream's cursor, the bar, the reconnects, and the pages skipped or failed so far."""

    def __init__(self, admin: Admin, job_id: str, progress: Progress, *, plain: bool = False) -> None:
        self.admin, self.job_id, self.progress = admin, job_id, progress
        self.task = progress.add_task("connecting", total=None, counts="")
        self.cursor = ""
        self.failures = 0  # reconnects in a row without an event
        self.outcomes = Outcomes()
        self.waiting = ""  # what the job waits for, as last said
        self.plain = plain  # progress as plain lines (a pipe, a log) instead of the bar
        self.said: tuple[str, int, float] = ("", -1, 0.0)  # the last plain line's state, pages and time

    def run(self) -> Any:
        """The job as it ended."""
        grpc = self.admin.grpc
        final = None
        while final is None:
            try:
                # Read to the stream's end: the snapshot of an ended job is followed by its events.
                for event in self.admin.watch(self.job_id, self.cursor):
                    if (ended := self.show(event)) is not None:
                        final = ended
                if final is None:
                    raise StreamEnded("the stream ended before the job did")
            except (grpc.RpcError, StreamEnded) as exc:
                if isinstance(exc, grpc.RpcError) and exc.code() not in retryable_codes(self.admin):
                    raise
                self.reconnect_after(exc)
        return final

    def show(self, event: Any) -> Any | None:
        """Draw one event; the job when it says the job has ended."""
        pb, job = self.admin.pb, event.job
        if self.failures:
            self.progress.console.print(f"[green]reconnected[/] to {self.admin.address}")
            self.failures = 0
        if event.event_id:
            self.cursor = event.event_id
        waiting = ""
        if event.kind in (
            pb.JOB_EVENT_KIND_SNAPSHOT,
            pb.JOB_EVENT_KIND_HEARTBEAT,
            pb.JOB_EVENT_KIND_STATE_CHANGED,
        ):
            waiting = self.waiting_for(job)
            if waiting and waiting != self.waiting:  # (once, so a log or a pipe shows it too)
                self.progress.console.print(f"waiting for {escape(waiting)}", soft_wrap=True)
            self.waiting = waiting
        self.progress.update(
            self.task,
            description=self.admin.state_name(job.state).lower(),
            total=max(job.pages_discovered, 1),
            completed=processed(job),
            counts=(f"waiting for {waiting} · " if waiting else "") + progress_counts(job),
        )
        ended = job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
        if self.plain and not ended:  # (the summary tells the end)
            self.say_progress(job)
        if event.kind == pb.JOB_EVENT_KIND_PAGE_FAILED:
            self.outcomes.failed.append((event.page_url, event.detail))
            self.progress.console.print(
                f"[red]failed[/] {escape(event.page_url)}: {escape(event.detail)}", soft_wrap=True
            )
        elif event.kind == pb.JOB_EVENT_KIND_PAGE_SKIPPED:
            self.outcomes.skipped.append((event.page_url, event.detail))
        elif event.kind == pb.JOB_EVENT_KIND_PAGE_REMOVED:  # (rare, and the operator wants to know which)
            self.progress.console.print(
                f"[yellow]removed[/] {escape(event.page_url)}: {escape(event.detail)}", soft_wrap=True
            )
        if ended and event.kind in (pb.JOB_EVENT_KIND_STATE_CHANGED, pb.JOB_EVENT_KIND_SNAPSHOT):
            return job
        return None

    def say_progress(self, job: Any) -> None:
        """The bar's line, printed: when the state changes, and while pages get done at most once every
        PLAIN_LINE_SECONDS."""
        state, pages, now = self.admin.state_name(job.state).lower(), processed(job), time.monotonic()
        said_state, said_pages, said_at = self.said
        if state == said_state and (pages == said_pages or now - said_at < PLAIN_LINE_SECONDS):
            return
        self.said = (state, pages, now)
        self.progress.console.print(f"{state}: {progress_counts(job)}", markup=False)

    def waiting_for(self, job: Any) -> str:
        """What holds up a job that has done no page yet (workers loading the model), from GetJob: events
        carry the job as stored, not what the workers are doing. Asked at most once per heartbeat."""
        pb = self.admin.pb
        if processed(job) or job.state not in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING):
            return ""
        try:
            return str(self.admin.call("GetJob", pb.GetJobRequest(job_id=self.job_id)).waiting_for)
        except self.admin.grpc.RpcError:
            return ""  # (the stream's own errors are the ones the watch reports)

    def reconnect_after(self, exc: Exception) -> None:
        """Say that the server is out of reach and wait before the next try; the last error ends the watch."""
        self.failures += 1
        if self.failures > MAX_RECONNECTS:
            raise exc
        code = getattr(exc, "code", None)
        why = code().name if callable(code) else str(exc)
        self.progress.console.print(
            f"[yellow]reconnecting[/] to {self.admin.address} (attempt {self.failures}): {why}",
            soft_wrap=True,
        )
        time.sleep(min(0.2 * 2**self.failures, MAX_RECONNECT_DELAY_SECONDS))


def retryable_codes(admin: Admin) -> tuple[Any, ...]:
    """Status codes of a server that is restarting or out of reach, rather than of a bad request."""
    codes = admin.grpc.StatusCode
    return (codes.UNAVAILABLE, codes.DEADLINE_EXCEEDED, codes.CANCELLED, codes.INTERNAL)


def processed(job: Any) -> int:
    """Pages the job is done with, whatever became of them."""
    return int(job.pages_done + job.pages_skipped + job.pages_failed)


def progress_counts(job: Any, now: float | None = None) -> str:
    """`12/40 discovered · 3.1 pages/s · ETA 9.0 s · 96 chunks`: the total grows as links are found."""
    parts = [f"{processed(job)}/{job.pages_discovered} discovered"]
    rate = pages_per_second(job, now)
    if rate:
        parts.append(f"{rate:.1f} pages/s")
        if not job.finished_at.seconds and job.pages_discovered > processed(job):
            parts.append(f"ETA {duration((job.pages_discovered - processed(job)) / rate)}")
    # Last, so that a narrow terminal cuts these rather than the pace: the summary repeats them.
    parts.append(f"{job.chunks_indexed} chunks")
    parts += [f"{n} {label}" for n, label in changes(job) if n]
    parts += [
        f"{n} {label}" for n, label in ((job.pages_skipped, "skipped"), (job.pages_failed, "failed")) if n
    ]
    return " · ".join(parts)


def changes(job: Any) -> list[tuple[int, str]]:
    """What an incremental crawl did to the knowledge base: (count, label) of each kind of page."""
    return [
        (int(job.pages_added), "added"),
        (int(job.pages_updated), "updated"),
        (int(job.pages_unchanged), "unchanged"),
        (int(job.pages_removed), "removed"),
    ]


def pages_per_second(job: Any, now: float | None = None) -> float | None:
    """The job's pace since it started, from its own timestamps (until now while it runs)."""
    if not job.started_at.seconds or not processed(job):
        return None
    end = job.finished_at.ToNanoseconds() / 1e9 if job.finished_at.seconds else (now or time.time())
    seconds = end - job.started_at.ToNanoseconds() / 1e9
    return processed(job) / seconds if seconds > 0 else None


def check_job(admin: Admin, job_id: str) -> None:
    """Fail on an unknown job before a bar is drawn; a server that is down is left to the reconnect loop."""
    try:
        admin.call("GetJob", admin.pb.GetJobRequest(job_id=job_id))
    except admin.grpc.RpcError as exc:
        if exc.code() in retryable_codes(admin):
            return
        if exc.code() == admin.grpc.StatusCode.NOT_FOUND:
            raise JobNotFound(f"no job {job_id}: {JOBS_HINT}") from None
        raise


def summary(admin: Admin, job: Any, outcomes: Outcomes, *, verbose: bool = False) -> list[str]:
    """What the crawl did, how fast, whether max_pages stopped it, and why pages were skipped or failed."""
    changed = ", ".join(f"{n} {label}" for n, label in changes(job) if n)
    # A re-crawl's pages are not all indexed: "8 done (1 added, 4 unchanged, ...)" says what became of them.
    recrawl = job.pages_updated or job.pages_unchanged or job.pages_removed  # (a first crawl only adds)
    done = f"{job.pages_done} done ({changed})" if recrawl else f"{job.pages_done} indexed"
    lines = [
        f"job {job.id} {admin.state_name(job.state)}: {done}, {job.pages_skipped} skipped, "
        f"{job.pages_failed} failed, {job.chunks_indexed} chunks"
        + _pace(job)
        + (f" — {job.error}" if job.error else "")
    ]
    if job.pages_beyond_max_pages and not job.cancel_requested:
        # Exact: the crawl refused this many distinct in-scope links because it had reached max_pages.
        lines.append(
            f"{processed(job)} of at least {job.pages_discovered + job.pages_beyond_max_pages} pages: "
            f"raise --max-pages (the crawl stopped at {job.max_pages} and left "
            f"{job.pages_beyond_max_pages} more it found)"
        )
    for label, pages in (("skipped", outcomes.skipped), ("failed", outcomes.failed)):
        if pages:
            lines.append(f"{label}: {group_reasons(detail for _, detail in pages)}")
            if verbose:
                lines.extend(f"  {url}: {detail}" for url, detail in pages)
    return lines


def _pace(job: Any) -> str:
    """` in 12 s (3.4 pages/s)` from the job's own timestamps; empty when it never started."""
    rate = pages_per_second(job)
    if not rate or not job.finished_at.seconds:
        return ""
    return f" in {duration(processed(job) / rate)} ({rate:.1f} pages/s)"


def reason(detail: str) -> str:
    """A skip or failure without its page-specific parts: `duplicate of <url>` -> `duplicate of …`."""
    general = re.sub(r"https?://[^\s,]+", "…", detail)
    general = re.sub(r"\s*\(.*?\)", "", general)
    return " ".join(general.split()).strip(" ,:") or "no reason given"


def group_reasons(details: Iterable[str], shown: int = REASONS_SHOWN) -> str:
    """`HTTP 404 (12), disallowed by robots.txt (3)`: most common first, the rest counted together."""
    counts = Counter(reason(d) for d in details).most_common()
    parts = [f"{name} ({n})" for name, n in counts[:shown]]
    rest = sum(n for _, n in counts[shown:])
    if rest:
        parts.append(f"other reasons ({rest}; --verbose lists them)")
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """`42 s`, `3:05`, `1:02:03`."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}:{whole % 60:02d}"
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def cmd_crawl(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    job = admin.call(
        "StartCrawl",
        admin.pb.StartCrawlRequest(
            url=args.url,
            knowledge_base=args.kb or settings.default_knowledge_base,
            max_pages=args.max_pages,
            max_depth=args.max_depth,
            max_concurrent_requests=args.max_concurrent,
            render=admin.pb.RenderMode.Value(f"RENDER_{args.render.upper()}"),
            include_patterns=args.include,
            exclude_patterns=args.exclude,
            full=args.full,
            sitemap=admin.pb.SitemapMode.Value(f"SITEMAP_MODE_{args.sitemap.upper()}"),
        ),
    )
    console.print(f"started job {job.id}: {job.url} → knowledge base {job.knowledge_base}")
    if args.watch:
        return follow_job(admin, job.id, verbose=args.verbose)
    return 0


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    return follow_job(Admin(settings, args.address), args.job_id, verbose=args.verbose)


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    try:
        job = admin.call("CancelJob", admin.pb.CancelJobRequest(job_id=args.job_id))
    except admin.grpc.RpcError as exc:
        if exc.code() == admin.grpc.StatusCode.NOT_FOUND:
            raise JobNotFound(f"no job {args.job_id}: {JOBS_HINT}") from None
        raise
    console.print(
        f"job {job.id}: {admin.state_name(job.state)}"
        + (" (cancel requested; in-flight pages finish)" if job.state == admin.pb.JOB_STATE_RUNNING else "")
    )
    return 0


def cmd_jobs(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    state = admin.pb.JobState.Value(f"JOB_STATE_{args.state.upper()}") if args.state else 0
    response = admin.call(
        "ListJobs", admin.pb.ListJobsRequest(knowledge_base=args.kb or "", state=state, page_size=args.limit)
    )
    rows = [
        [
            job.id,
            admin.state_name(job.state),
            job.knowledge_base,
            job.url,
            str(job.pages_done),
            str(job.pages_skipped),
            str(job.pages_failed),
            str(job.chunks_indexed),
            local_time(job.created_at),
        ]
        for job in response.jobs
    ]
    print_listing(JOB_COLUMNS, rows, response.jobs, json_output=args.json)
    return 0
