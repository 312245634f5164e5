"""Knowledge bases and their pages through the admin API: `kbs` and `sources`."""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.admin import Admin, local_time
from cli.console import Column, console, err, print_listing
from ragcord.settings import Settings

SOURCE_COLUMNS = [
    Column("url", min_width=20, ratio=3, fold=True),
    Column("title", min_width=10, ratio=2, fold=True),
    Column("chunks", justify="right"),
    Column("indexed", needs_width=100),
]
KB_COLUMNS = [
    Column("knowledge base", min_width=10, ratio=1, fold=True),
    Column("chunks", justify="right"),
    Column("Discord servers", min_width=10, ratio=2, fold=True),
    Column("description", min_width=10, ratio=2, fold=True, needs_width=100),
]


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    kb = args.kb or settings.default_knowledge_base
    if args.show:
        return _show_source(admin, kb, args.show)
    if args.delete:
        response = admin.call(
            "DeleteSource", admin.pb.DeleteSourceRequest(knowledge_base=kb, url=args.delete)
        )
        console.print(f"deleted {args.delete}: {response.chunks_deleted} chunks")
        return 0
    response = admin.call("ListSources", admin.pb.ListSourcesRequest(knowledge_base=kb))
    rows = [
        [source.url, source.title, str(source.chunk_count), local_time(source.indexed_at)]
        for source in response.sources
    ]
    print_listing(SOURCE_COLUMNS, rows, response.sources, json_output=args.json)
    if console.is_terminal and not args.json:  # a pipe gets the rows alone
        console.print(f"{len(response.sources)} pages in knowledge base {kb}")
    return 0


def _show_source(admin: Admin, kb: str, url: str) -> int:
    detail = admin.call("GetSource", admin.pb.GetSourceRequest(knowledge_base=kb, url=url))
    console.print(f"[bold]{escape(detail.source.title)}[/] {escape(detail.source.url)}")
    indexed = detail.source.indexed_at
    header = Table.grid(padding=(0, 2))
    header.add_column(style="dim")
    header.add_column()
    rows = [
        ("chunks", str(detail.source.chunk_count)),
        ("content hash", detail.source.content_hash),
        ("fetched", local_time(detail.fetched_at) if detail.HasField("fetched_at") else ""),
        ("changed", local_time(detail.changed_at) if detail.HasField("changed_at") else ""),
        ("indexed", local_time(detail.indexed_at if detail.HasField("indexed_at") else indexed)),
        ("ETag", detail.etag),
        ("Last-Modified", detail.last_modified),
    ]
    for label, value in rows:
        if value:
            header.add_row(label, Text(value))
    console.print(header)
    for chunk in detail.chunks:
        console.rule(f"#{chunk.index} {chunk.heading}")
        console.print(chunk.text, markup=False)
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
        return _delete_kb(admin, args.delete, confirmed=args.yes)
    response = admin.call("ListKnowledgeBases", admin.pb.ListKnowledgeBasesRequest())
    rows = [
        [kb.name, str(kb.chunk_count), ", ".join(kb.discord_guild_ids) or "(shared)", kb.description]
        for kb in response.knowledge_bases
    ]
    print_listing(KB_COLUMNS, rows, response.knowledge_bases, json_output=args.json)
    return 0


def _delete_kb(admin: Admin, name: str, *, confirmed: bool) -> int:
    """Deleting every page of a knowledge base is not undoable: the operator types its name (or --yes)."""
    if not confirmed:
        if not sys.stdin.isatty():
            err.print("error: deleting a knowledge base needs --yes when there is no terminal to ask on")
            return 2
        typed = console.input(f"delete knowledge base {name} and every page in it? type its name: ")
        if typed.strip() != name:
            err.print("not deleted")
            return 1
    response = admin.call("DeleteKnowledgeBase", admin.pb.DeleteKnowledgeBaseRequest(knowledge_base=name))
    console.print(f"deleted knowledge base {name}: {response.chunks_deleted} chunks")
    return 0
