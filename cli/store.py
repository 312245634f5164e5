"""`ragcord store copy`: move knowledge bases between stores (vectors included) without re-crawling."""

from __future__ import annotations

import argparse
from contextlib import closing

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cli.console import console, err
from ragcord.settings import Settings


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

                def show(done: int, total: int, task: TaskID = task) -> None:
                    bar.update(task, completed=done)

                result = copy_knowledge_base(source, target, kb, progress=show)
                bar.console.print(
                    f"{kb}: {result.pages} pages, {result.chunks} chunks copied to {args.target}"
                )
                if result.changed:
                    bar.console.print(
                        f"[yellow]warning[/]: {result.changed} pages of {kb} changed while they were "
                        "copied (a crawl is running?); run the copy again once it has finished"
                    )
    return 0
