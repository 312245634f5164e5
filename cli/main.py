"""The `ragcord` command: run the services, and operate crawls through the admin API.

Framework imports (grpc, dramatiq, discord) happen inside the commands that need them, so
`ragcord --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.markup import escape

from cli.admin import admin_address, call_error
from cli.answers import cmd_ask, cmd_chat
from cli.console import err
from cli.demo import add_demo_command
from cli.evaluate import add_eval_command
from cli.jobs import cmd_cancel, cmd_crawl, cmd_jobs, cmd_watch
from cli.kb import add_kb_command
from cli.kbs import cmd_kbs, cmd_sources
from cli.report import add_report_command
from cli.store import cmd_store_copy
from cli.supervise import cmd_bot, cmd_rpc, cmd_serve, cmd_worker
from ragcord.errors import RagcordError
from ragcord.logs import configure_logging
from ragcord.malloc import give_memory_back
from ragcord.settings import Settings

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]  # what add_subparsers() returns

STORES = ["sqlite", "lancedb", "weaviate"]
JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragcord", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ragcord {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_process_commands(sub)
    _add_job_commands(sub)
    _add_answer_commands(sub)
    _add_store_commands(sub)
    _add_kb_commands(sub)
    add_kb_command(sub)  # `ragcord kb create|update|show|recrawl|schedule` (issue 22)
    add_demo_command(sub)
    return parser


def _client(sub: Subcommands, name: str, help_: str) -> argparse.ArgumentParser:
    """A command that talks to the admin API: it takes --address."""
    p = sub.add_parser(name, help=help_)
    p.add_argument("--address", help="admin API address (default: RAGCORD_GRPC_ADDRESS)")
    return p


def _add_process_commands(sub: Subcommands) -> None:
    sub.add_parser(
        "serve", help="admin API + workers (+ the bot with DISCORD_TOKEN, + local Redis)"
    ).set_defaults(fn=cmd_serve)
    sub.add_parser("rpc", help="the admin API alone").set_defaults(fn=cmd_rpc)
    sub.add_parser("worker", help="Dramatiq workers alone").set_defaults(fn=cmd_worker)
    sub.add_parser("bot", help="the Discord bot alone (needs DISCORD_TOKEN)").set_defaults(fn=cmd_bot)


def _add_job_commands(sub: Subcommands) -> None:
    p = _client(sub, "crawl", "start a crawl")
    p.add_argument("url")
    p.add_argument("--kb", help="knowledge base (default: RAGCORD_DEFAULT_KNOWLEDGE_BASE)")
    p.add_argument("--max-pages", type=int, default=0, help="default 100")
    p.add_argument("--max-depth", type=int, default=0, help="default 10")
    p.add_argument("--max-concurrent", type=int, default=0, help="requests to the site at once (default 2)")
    p.add_argument(
        "--render",
        choices=("auto", "always", "never"),
        default="auto",
        help="render pages in a headless Chromium on the workers: auto (pages with no text in their HTML "
        "that load scripts, e.g. Docsify), always, never (default auto)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="index every page again, ignoring what the knowledge base knows (after changing the embedder "
        "or chunk settings); by default only changed pages are re-embedded",
    )
    p.add_argument(
        "--sitemap",
        choices=("include", "only", "skip"),
        default="include",
        help="the site's sitemaps: include (their URLs seed the crawl beside the links it follows), only "
        "(only their URLs), skip (default include)",
    )
    p.add_argument("--include", action="append", default=[], metavar="REGEX", help="only paths matching")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX", help="skip paths matching")
    p.add_argument("--watch", action="store_true", help="show progress until the crawl ends")
    p.add_argument("--verbose", action="store_true", help="with --watch: list every skipped and failed page")
    p.set_defaults(fn=cmd_crawl)

    p = _client(sub, "watch", "follow a job until it ends")
    p.add_argument("job_id")
    p.add_argument("--verbose", action="store_true", help="list every skipped and failed page at the end")
    p.set_defaults(fn=cmd_watch)

    p = _client(sub, "cancel", "cancel a job")
    p.add_argument("job_id")
    p.set_defaults(fn=cmd_cancel)

    p = _client(sub, "jobs", "list jobs, newest first")
    p.add_argument("--kb")
    p.add_argument("--state", choices=JOB_STATES)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print JSON (a list of objects) instead of a table")
    p.set_defaults(fn=cmd_jobs)


def _add_answer_commands(sub: Subcommands) -> None:
    p = _client(sub, "ask", "ask one question; the answer streams, then its sources")
    p.add_argument("question")
    p.add_argument("--kb")
    p.add_argument("--conversation", metavar="ID", help="continue this conversation")
    p.set_defaults(fn=cmd_ask)

    p = _client(sub, "chat", "a conversation in the terminal, with memory")
    p.add_argument("--kb")
    p.set_defaults(fn=cmd_chat)

    add_eval_command(sub, _client)
    add_report_command(sub, _client)


def _add_store_commands(sub: Subcommands) -> None:
    p = sub.add_parser("store", help="manage the knowledge store")
    store = p.add_subparsers(dest="store_command", required=True)
    p = store.add_parser("copy", help="copy knowledge bases between stores without re-crawling")
    p.add_argument("--from", dest="source", choices=STORES, required=True)
    p.add_argument("--to", dest="target", choices=STORES, required=True)
    p.add_argument("--kb", help="one knowledge base (default: all)")
    p.set_defaults(fn=cmd_store_copy)


def _add_kb_commands(sub: Subcommands) -> None:
    p = _client(sub, "kbs", "list the knowledge bases, or delete one")
    p.add_argument("--delete", metavar="NAME", help="delete this knowledge base and every page in it")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--set-servers",
        metavar="NAME",
        help="set which Discord servers may use it (each --server; none: all)",
    )
    p.add_argument("--server", action="append", metavar="GUILD_ID", help="a Discord server id (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON (a list of objects) instead of a table")
    p.set_defaults(fn=cmd_kbs)

    p = _client(sub, "sources", "list the pages of a knowledge base")
    p.add_argument("--kb")
    p.add_argument("--show", metavar="URL", help="print one page's stored chunks")
    p.add_argument("--delete", metavar="URL", help="remove one page from the knowledge base")
    p.add_argument("--json", action="store_true", help="print JSON (a list of objects) instead of a table")
    p.set_defaults(fn=cmd_sources)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for line in settings_errors(exc):
            err.print(f"[red]error[/]: {line}", soft_wrap=True)
        return 2
    configure_logging(settings)
    give_memory_back()
    try:
        status: int = args.fn(settings, args)
        return status
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _user_error(exc, *admin_address(settings, getattr(args, "address", None)))
        if message is None:
            raise
        err.print(f"[red]error[/]: {escape(message)}")
        return 1


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per invalid setting, named as the operator sets it; no values (they may be secrets)."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "settings"
        variable = field if field.isupper() else f"RAGCORD_{field.upper()}"
        lines.append(f"{variable}: {error['msg'].removeprefix('Value error, ')}")
    return lines


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragcord")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "(not installed)"


def _user_error(exc: Exception, address: str, source: str) -> str | None:
    """What to tell the operator about an expected failure; None for a bug (its traceback is shown)."""
    if isinstance(exc, RagcordError):
        return str(exc)
    return call_error(exc, address, source)


if __name__ == "__main__":
    sys.exit(main())
