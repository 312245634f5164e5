"""Crawl jobs through the admin API: `crawl`, `watch` (a live progress bar), `cancel` and `jobs`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.admin import Admin, local_time
from cli.console import console
from ragcord.settings import Settings

MAX_RECONNECTS = 30  # in a row without an event; then the error reaches the user
MAX_RECONNECT_DELAY_SECONDS = 5.0


class StreamEnded(RuntimeError):
    """The event stream closed before the job's terminal event (a restarted server): reconnect."""


def follow_job(admin: Admin, job_id: str, *, quiet: bool = False) -> int:
    """Watch a job to its end with a progress bar; reconnects with the last cursor if the stream drops."""
    grpc = admin.grpc
    pb = admin.pb
    retryable = (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
    )
    terminal_states = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
    cursor = ""
    final = None
    failures = 0
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "pages · {task.fields[chunks]} chunks · {task.fields[failed]} failed · "
            "{task.fields[skipped]} skipped"
        ),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=False, disable=quiet) as progress:
        task = progress.add_task(job_id, total=None, chunks=0, failed=0, skipped=0)
        while final is None:
            try:
                for event in admin.watch(job_id, cursor):
                    failures = 0
                    if event.event_id:
                        cursor = event.event_id
                    job = event.job
                    progress.update(
                        task,
                        description=f"{job.id} {admin.state_name(job.state).lower()}",
                        total=max(job.pages_discovered, 1),
                        completed=job.pages_done + job.pages_failed + job.pages_skipped,
                        chunks=job.chunks_indexed,
                        failed=job.pages_failed,
                        skipped=job.pages_skipped,
                    )
                    if event.kind == pb.JOB_EVENT_KIND_PAGE_FAILED:
                        progress.console.print(f"[red]failed[/] {event.page_url}: {event.detail}")
                    if job.state in terminal_states and event.kind in (
                        pb.JOB_EVENT_KIND_STATE_CHANGED,
                        pb.JOB_EVENT_KIND_SNAPSHOT,
                    ):
                        final = job
                if final is None:
                    raise StreamEnded("stream ended before the job did")
            except (grpc.RpcError, StreamEnded) as exc:
                if isinstance(exc, grpc.RpcError) and exc.code() not in retryable:
                    raise
                failures += 1
                if failures > MAX_RECONNECTS:
                    raise
                time.sleep(min(0.2 * 2**failures, MAX_RECONNECT_DELAY_SECONDS))
    console.print(_summary(admin, final))
    return 0 if final.state == pb.JOB_STATE_SUCCEEDED else 1


def _summary(admin: Admin, job: Any) -> str:
    return (
        f"job {job.id} {admin.state_name(job.state)}: {job.pages_done} indexed, {job.pages_skipped} skipped, "
        f"{job.pages_failed} failed, {job.chunks_indexed} chunks" + (f" — {job.error}" if job.error else "")
    )


def cmd_crawl(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    job = admin.call(
        "StartCrawl",
        admin.pb.StartCrawlRequest(
            url=args.url,
            knowledge_base=args.kb or settings.default_knowledge_base,
            max_pages=args.max_pages,
            max_depth=args.max_depth,
            include_patterns=args.include,
            exclude_patterns=args.exclude,
        ),
    )
    console.print(f"started job {job.id}: {job.url} → knowledge base {job.knowledge_base}")
    if args.watch:
        return follow_job(admin, job.id)
    return 0


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    return follow_job(Admin(settings, args.address), args.job_id)


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    job = admin.call("CancelJob", admin.pb.CancelJobRequest(job_id=args.job_id))
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
    table = Table()
    for name in ("id", "state", "kb"):
        table.add_column(name, no_wrap=True)
    table.add_column("url", overflow="fold")
    for name in ("done", "skipped", "failed", "chunks", "created"):
        table.add_column(name, no_wrap=True)
    for job in response.jobs:
        table.add_row(
            job.id,
            admin.state_name(job.state),
            job.knowledge_base,
            job.url,
            str(job.pages_done),
            str(job.pages_skipped),
            str(job.pages_failed),
            str(job.chunks_indexed),
            local_time(job.created_at),
        )
    console.print(table)
    return 0
