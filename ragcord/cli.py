"""The `ragcord` command: run the services, and operate crawls through the admin API.

Framework imports (grpc, dramatiq) happen inside the commands that need them, so `ragcord --help`
stays fast and the core stays free of them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragcord.logs import configure_logging
from ragcord.settings import Settings

log = logging.getLogger(__name__)
console = Console(stderr=False, highlight=False)
err = Console(stderr=True, highlight=False)


# -- services -----------------------------------------------------------------------------------------


def worker_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.entry",
        "--processes",
        str(settings.worker_processes),
        "--threads",
        str(settings.worker_threads),
    ]


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # Dramatiq reads this at import: how long an idle consumer sleeps between polls.
    env.setdefault("dramatiq_worker_timeout", str(settings.worker_idle_timeout_ms))
    env.setdefault("HF_HUB_OFFLINE", "1")
    if settings.worker_metrics_port:
        # Read by Dramatiq's Prometheus middleware at import (workers/entry.py adds it).
        env.setdefault("dramatiq_prom_host", settings.worker_metrics_host)
        env.setdefault("dramatiq_prom_port", str(settings.worker_metrics_port))
        env.setdefault("dramatiq_prom_db", str((settings.data_dir / "dramatiq-prometheus").resolve()))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    command = worker_command(settings)
    os.execvpe(command[0], command, worker_env(settings))
    return 0  # not reached


def cmd_rpc(settings: Settings, args: argparse.Namespace) -> int:
    from rpc.server import serve

    asyncio.run(serve(settings))
    return 0


def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import run_bot

    asyncio.run(run_bot(settings))
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """The admin API in this process, the Dramatiq workers as a child; Ctrl-C stops both cleanly."""
    from ragcord.localredis import ensure_redis
    from rpc.server import check_exposure, serve

    check_exposure(settings)
    redis_process = ensure_redis(settings.redis_url, settings.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    workers = subprocess.Popen(worker_command(settings), env=worker_env(settings))
    log.info(
        "workers started (pid %s: %s processes x %s threads)",
        workers.pid,
        settings.worker_processes,
        settings.worker_threads,
    )

    async def workers_exited() -> None:
        while workers.poll() is None:
            await asyncio.sleep(0.5)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        api = asyncio.create_task(serve(settings))
        watch_workers = asyncio.create_task(workers_exited())
        stopped = asyncio.create_task(stop.wait())
        tasks = {api, watch_workers, stopped}
        bot = None
        if settings.discord_token is not None:
            from bot.app import run_bot

            bot = asyncio.create_task(run_bot(settings, metrics=False))  # the API's /metrics covers it
            tasks.add(bot)
        else:
            log.info("DISCORD_TOKEN is not set: running without the Discord bot")
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if watch_workers in done:
            log.error("workers exited with status %s; stopping", workers.returncode)
            return 1
        for task in (api, bot):
            if task is not None and task in done and task.exception() is not None:
                raise task.exception()
        return 0

    try:
        status = asyncio.run(main())
    finally:
        # Signal the Dramatiq master only: it stops its worker processes itself (a process-group
        # signal can hang them).
        if workers.poll() is None:
            workers.send_signal(signal.SIGTERM)
            try:
                workers.wait(timeout=30)
            except subprocess.TimeoutExpired:
                workers.kill()
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)
        log.info("stopped")
    return status


# -- admin API client ---------------------------------------------------------------------------------


class Admin:
    """A small client of the admin API: the channel, the token, and the stubs."""

    def __init__(self, settings: Settings, address: str | None) -> None:
        import grpc

        from rpc.v1 import admin_pb2, admin_pb2_grpc

        self.grpc = grpc
        self.pb = admin_pb2
        self.channel = grpc.insecure_channel(address or settings.grpc_address)
        self.stub = admin_pb2_grpc.AdminServiceStub(self.channel)
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def call(self, name: str, request, timeout: float = 30.0):
        return getattr(self.stub, name)(request, metadata=self.metadata, timeout=timeout)

    def watch(self, job_id: str, after: str = ""):
        return self.stub.WatchJob(
            self.pb.WatchJobRequest(job_id=job_id, after_event_id=after), metadata=self.metadata
        )


def _ts(value) -> str:
    if value is None or not value.seconds:
        return "-"
    return datetime.fromtimestamp(value.seconds).strftime("%Y-%m-%d %H:%M:%S")


def _state(admin: Admin, value: int) -> str:
    return admin.pb.JobState.Name(value).removeprefix("JOB_STATE_")


def follow_job(admin: Admin, job_id: str, *, quiet: bool = False) -> int:
    """Watch a job to its end with a progress bar; reconnects with the last cursor if the stream drops."""
    grpc = admin.grpc
    pb = admin.pb
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
                    finished = job.pages_done + job.pages_failed + job.pages_skipped
                    progress.update(
                        task,
                        description=f"{job.id} {_state(admin, job.state).lower()}",
                        total=max(job.pages_discovered, 1),
                        completed=finished,
                        chunks=job.chunks_indexed,
                        failed=job.pages_failed,
                        skipped=job.pages_skipped,
                    )
                    if event.kind == pb.JOB_EVENT_KIND_PAGE_FAILED:
                        progress.console.print(f"[red]failed[/] {event.page_url}: {event.detail}")
                    if job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
                        if event.kind in (pb.JOB_EVENT_KIND_STATE_CHANGED, pb.JOB_EVENT_KIND_SNAPSHOT):
                            final = job
                if final is None:
                    raise RuntimeError("stream ended before the job did")
            except (grpc.RpcError, RuntimeError) as exc:
                code = exc.code() if isinstance(exc, grpc.RpcError) else None
                if code not in (
                    None,
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.INTERNAL,
                ):
                    raise
                failures += 1
                if failures > 30:
                    raise
                time.sleep(min(0.2 * 2**failures, 5.0))
    state = _state(admin, final.state)
    console.print(
        f"job {final.id} {state}: {final.pages_done} indexed, {final.pages_skipped} skipped, "
        f"{final.pages_failed} failed, {final.chunks_indexed} chunks"
        + (f" — {final.error}" if final.error else "")
    )
    return 0 if final.state == pb.JOB_STATE_SUCCEEDED else 1


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
        f"job {job.id}: {_state(admin, job.state)}"
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
            _state(admin, job.state),
            job.knowledge_base,
            job.url,
            str(job.pages_done),
            str(job.pages_skipped),
            str(job.pages_failed),
            str(job.chunks_indexed),
            _ts(job.created_at),
        )
    console.print(table)
    return 0


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    kb = args.kb or settings.default_knowledge_base
    if args.show:
        detail = admin.call("GetSource", admin.pb.GetSourceRequest(knowledge_base=kb, url=args.show))
        console.print(
            f"[bold]{detail.source.title}[/] {detail.source.url} ({detail.source.chunk_count} chunks)"
        )
        for chunk in detail.chunks:
            console.rule(f"#{chunk.index} {chunk.heading}")
            console.print(chunk.text, markup=False)
        return 0
    if args.delete:
        response = admin.call(
            "DeleteSource", admin.pb.DeleteSourceRequest(knowledge_base=kb, url=args.delete)
        )
        console.print(f"deleted {args.delete}: {response.chunks_deleted} chunks")
        return 0
    response = admin.call("ListSources", admin.pb.ListSourcesRequest(knowledge_base=kb))
    table = Table()
    table.add_column("url", overflow="fold")
    table.add_column("title")
    table.add_column("chunks", no_wrap=True)
    table.add_column("indexed", no_wrap=True)
    for source in response.sources:
        table.add_row(source.url, source.title, str(source.chunk_count), _ts(source.indexed_at))
    console.print(table)
    console.print(f"{len(response.sources)} pages in knowledge base {kb}")
    return 0


def cmd_kbs(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    if args.set_servers:
        kb = admin.call(
            "SetKnowledgeBaseServers",
            admin.pb.SetKnowledgeBaseServersRequest(
                knowledge_base=args.set_servers, discord_guild_ids=args.server or []
            ),
        )
        servers = ", ".join(kb.discord_guild_ids) or "any Discord server (shared)"
        console.print(f"knowledge base {kb.name} can now be used by {servers}")
        return 0
    if args.delete:
        if not args.yes:
            if not sys.stdin.isatty():
                err.print("error: deleting a knowledge base needs --yes when there is no terminal to ask on")
                return 2
            typed = console.input(
                f"delete knowledge base {args.delete} and every page in it? type its name: "
            )
            if typed.strip() != args.delete:
                err.print("not deleted")
                return 1
        response = admin.call(
            "DeleteKnowledgeBase", admin.pb.DeleteKnowledgeBaseRequest(knowledge_base=args.delete)
        )
        console.print(f"deleted knowledge base {args.delete}: {response.chunks_deleted} chunks")
        return 0
    response = admin.call("ListKnowledgeBases", admin.pb.ListKnowledgeBasesRequest())
    table = Table()
    table.add_column("knowledge base")
    table.add_column("chunks", justify="right")
    table.add_column("Discord servers")
    for kb in response.knowledge_bases:
        table.add_row(kb.name, str(kb.chunk_count), ", ".join(kb.discord_guild_ids) or "(shared)")
    console.print(table)
    return 0


def stream_answer(admin: Admin, question: str, kb: str, conversation_id: str = "") -> str:
    """Print the answer as it is written, then its sources; returns the conversation id."""
    request = admin.pb.AskRequest(question=question, knowledge_base=kb, conversation_id=conversation_id)
    answer = None
    for event in admin.stub.AskStream(request, metadata=admin.metadata, timeout=300):
        if event.HasField("answer"):
            answer = event.answer
        else:
            console.print(event.delta, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()
    if answer is not None and answer.citations:
        console.print("[dim]Sources:[/]")
        for citation in answer.citations:
            console.print(f"  [{citation.number}] {citation.title} — {citation.url}", markup=False)
    return answer.conversation_id if answer is not None else conversation_id


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    stream_answer(admin, args.question, args.kb or settings.default_knowledge_base, args.conversation or "")
    return 0


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    """A terminal conversation with memory: follow-up questions use what was said before."""
    admin = Admin(settings, args.address)
    kb = args.kb or settings.default_knowledge_base
    conversation_id = ""
    console.print(f"Ask about knowledge base [bold]{kb}[/]. /clear forgets the conversation; Ctrl-D quits.")
    while True:
        try:
            question = console.input("[bold green]you>[/] ").strip()
        except EOFError:
            console.print()
            return 0
        if not question:
            continue
        if question == "/clear":
            if conversation_id:
                admin.call(
                    "ClearConversation", admin.pb.ClearConversationRequest(conversation_id=conversation_id)
                )
            conversation_id = ""
            console.print("[dim]conversation forgotten[/]")
            continue
        try:
            conversation_id = stream_answer(admin, question, kb, conversation_id)
        except admin.grpc.RpcError as exc:
            err.print(f"[red]error[/]: {exc.code().name}: {exc.details()}")


def cmd_store_copy(settings: Settings, args: argparse.Namespace) -> int:
    """Copy knowledge bases between stores (vectors included), e.g. from LanceDB to Weaviate."""
    from ragcord.knowledge.embedders import build_embedder
    from ragcord.knowledge.migrate import copy_knowledge_base
    from ragcord.knowledge.stores import build_store

    if args.source == args.target:
        err.print("error: --from and --to name the same store")
        return 2
    dim = build_embedder(settings).dim
    with (
        closing(build_store(settings.model_copy(update={"store": args.source}), dim=dim)) as source,
        closing(build_store(settings.model_copy(update={"store": args.target}), dim=dim)) as target,
    ):
        names = [args.kb] if args.kb else source.knowledge_bases()
        if not names:
            console.print(f"{args.source} holds no knowledge bases")
            return 0
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TimeElapsedColumn(),
        ]
        with Progress(*columns, console=console) as bar:
            for kb in names:
                task = bar.add_task(kb, total=source.count_chunks(kb))
                result = copy_knowledge_base(
                    source,
                    target,
                    kb,
                    progress=lambda done, total, task=task: bar.update(task, completed=done),
                )
                bar.console.print(
                    f"{kb}: {result.pages} pages, {result.chunks} chunks copied to {args.target}"
                )
                if result.changed:
                    bar.console.print(
                        f"[yellow]warning[/]: {result.changed} pages of {kb} changed while they were "
                        "copied (a crawl is running?); run the copy again once it has finished"
                    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragcord", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--address", help="admin API address (default: RAGCORD_GRPC_ADDRESS)")
        return p

    sub.add_parser(
        "serve", help="admin API + workers (+ the bot with DISCORD_TOKEN, + local Redis)"
    ).set_defaults(fn=cmd_serve)
    sub.add_parser("rpc", help="the admin API alone").set_defaults(fn=cmd_rpc)
    sub.add_parser("worker", help="Dramatiq workers alone").set_defaults(fn=cmd_worker)
    sub.add_parser("bot", help="the Discord bot alone (needs DISCORD_TOKEN)").set_defaults(fn=cmd_bot)

    p = client("crawl", "start a crawl")
    p.add_argument("url")
    p.add_argument("--kb", help="knowledge base (default: RAGCORD_DEFAULT_KNOWLEDGE_BASE)")
    p.add_argument("--max-pages", type=int, default=0, help="default 100")
    p.add_argument("--max-depth", type=int, default=0, help="default 10")
    p.add_argument("--include", action="append", default=[], metavar="REGEX", help="only paths matching")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX", help="skip paths matching")
    p.add_argument("--watch", action="store_true", help="show progress until the crawl ends")
    p.set_defaults(fn=cmd_crawl)

    p = client("watch", "follow a job until it ends")
    p.add_argument("job_id")
    p.set_defaults(fn=cmd_watch)

    p = client("cancel", "cancel a job")
    p.add_argument("job_id")
    p.set_defaults(fn=cmd_cancel)

    p = client("jobs", "list jobs, newest first")
    p.add_argument("--kb")
    p.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(fn=cmd_jobs)

    p = client("ask", "ask one question; the answer streams, then its sources")
    p.add_argument("question")
    p.add_argument("--kb")
    p.add_argument("--conversation", metavar="ID", help="continue this conversation")
    p.set_defaults(fn=cmd_ask)

    p = client("chat", "a conversation in the terminal, with memory")
    p.add_argument("--kb")
    p.set_defaults(fn=cmd_chat)

    p = sub.add_parser("store", help="manage the knowledge store")
    store = p.add_subparsers(dest="store_command", required=True)
    p = store.add_parser("copy", help="copy knowledge bases between stores without re-crawling")
    p.add_argument("--from", dest="source", choices=["lancedb", "weaviate"], required=True)
    p.add_argument("--to", dest="target", choices=["lancedb", "weaviate"], required=True)
    p.add_argument("--kb", help="one knowledge base (default: all)")
    p.set_defaults(fn=cmd_store_copy)

    p = client("kbs", "list the knowledge bases, or delete one")
    p.add_argument("--delete", metavar="NAME", help="delete this knowledge base and every page in it")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--set-servers",
        metavar="NAME",
        help="set which Discord servers may use it (each --server; none: all)",
    )
    p.add_argument("--server", action="append", metavar="GUILD_ID", help="a Discord server id (repeatable)")
    p.set_defaults(fn=cmd_kbs)

    p = client("sources", "list the pages of a knowledge base")
    p.add_argument("--kb")
    p.add_argument("--show", metavar="URL", help="print one page's stored chunks")
    p.add_argument("--delete", metavar="URL", help="remove one page from the knowledge base")
    p.set_defaults(fn=cmd_sources)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    try:
        return args.fn(settings, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        code = getattr(exc, "code", None)
        if callable(code) and hasattr(exc, "details"):
            err.print(f"[red]error[/]: {exc.code().name}: {exc.details()}")
            return 1
        from ragcord.errors import RagcordError

        if isinstance(exc, RagcordError):
            err.print(f"[red]error[/]: {exc}")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
