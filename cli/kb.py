"""`ragcord kb create|update|show|recrawl|schedule`: a knowledge base's record, sources and schedule."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.admin import Admin, local_time
from cli.console import Column, as_json, console, err, print_listing
from ragcord.errors import InvalidArgument
from ragcord.schedules import describe_every, parse_every
from ragcord.settings import Settings

SCHEDULE_COLUMNS = [
    Column("knowledge base", min_width=10, ratio=1, fold=True),
    Column("every"),
    Column("next run"),
]
_STATES = {1: "queued", 2: "running", 3: "succeeded", 4: "failed", 5: "cancelled"}


def _instructions(args: argparse.Namespace) -> str | None:
    if args.instructions_file:
        try:
            return Path(args.instructions_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgument(f"--instructions-file {args.instructions_file}: {exc.strerror}") from None
    given: str | None = args.instructions
    return given


def cmd_kb(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    pb = admin.pb
    action = args.kb_command
    if action == "create":
        kb = admin.call(
            "CreateKnowledgeBase",
            pb.CreateKnowledgeBaseRequest(
                name=args.name,
                description=args.description or "",
                answer_instructions=_instructions(args) or "",
            ),
        )
        console.print(f"created knowledge base {kb.name}; `ragcord crawl URL --kb {kb.name}` fills it")
        return 0
    if action == "update":
        fields: dict[str, Any] = {}
        if args.description is not None:
            fields["description"] = args.description
        if (instructions := _instructions(args)) is not None:
            fields["answer_instructions"] = instructions
        if not fields:
            err.print("error: nothing to change: give --description, --instructions or --instructions-file")
            return 2
        kb = admin.call("UpdateKnowledgeBase", pb.UpdateKnowledgeBaseRequest(name=args.name, **fields))
        console.print(f"updated knowledge base {kb.name}: {', '.join(fields)}")
        return 0
    if action == "show":
        kb = admin.call("GetKnowledgeBase", pb.GetKnowledgeBaseRequest(name=args.name))
        if args.json:
            sys.stdout.write(json.dumps(json.loads(as_json([kb]))[0], indent=2) + "\n")  # the object alone
            return 0
        _print_kb(kb)
        return 0
    if action == "recrawl":
        response = admin.call(
            "RecrawlKnowledgeBase", pb.RecrawlKnowledgeBaseRequest(knowledge_base=args.name)
        )
        for job in response.jobs:
            console.print(f"job {job.id}: re-crawling {job.url}  (ragcord watch {job.id})", soft_wrap=True)
        return 0
    # schedule
    if args.name is None:
        listed = admin.call("ListSchedules", pb.ListSchedulesRequest())
        rows = [
            [s.knowledge_base, describe_every(s.every_seconds), local_time(s.next_run_at)]
            for s in listed.schedules
        ]
        print_listing(SCHEDULE_COLUMNS, rows, listed.schedules, json_output=args.json)
        return 0
    if args.every is None:
        err.print("error: say how often: ragcord kb schedule NAME 1d (or 12h, 30m, off)")
        return 2
    seconds = parse_every(args.every)
    schedule = admin.call(
        "SetSchedule", pb.SetScheduleRequest(knowledge_base=args.name, every_seconds=seconds)
    )
    if not schedule.every_seconds:
        console.print(f"knowledge base {args.name} is no longer re-crawled on a schedule")
    else:
        console.print(
            f"knowledge base {args.name} is re-crawled every {describe_every(schedule.every_seconds)}; "
            f"next at {local_time(schedule.next_run_at)}"
        )
    return 0


def _print_kb(kb: Any) -> None:
    console.print(f"[bold]{kb.name}[/]: {kb.page_count} pages, {kb.chunk_count} chunks", highlight=False)
    if kb.description:
        console.print(f"description: {kb.description}", markup=False)
    if kb.answer_instructions:
        console.print("answer instructions:", markup=False)
        for line in kb.answer_instructions.splitlines():
            console.print(f"  {line}", markup=False)
    servers = ", ".join(kb.discord_guild_ids) or "any (shared)"
    console.print(f"Discord servers: {servers}", markup=False)
    if kb.HasField("schedule"):
        every = describe_every(kb.schedule.every_seconds)
        console.print(
            f"re-crawled every {every}; next at {local_time(kb.schedule.next_run_at)}", markup=False
        )
    else:
        console.print("no schedule", markup=False)
    console.print(f"sources ({len(kb.sources)}):", markup=False)
    for source in kb.sources:
        scope = f"max_pages {source.max_pages}, max_depth {source.max_depth}"
        if source.include_patterns:
            scope += f", include {list(source.include_patterns)}"
        if source.exclude_patterns:
            scope += f", exclude {list(source.exclude_patterns)}"
        last = "last crawl expired"
        if source.last_job_id:
            state = _STATES.get(source.last_state, "?")
            last = f"last crawl {source.last_job_id} {state}: {source.last_pages_done} pages"
            if source.last_pages_failed:
                last += f", {source.last_pages_failed} failed"
            if source.last_finished_at.seconds:
                last += f", ended {local_time(source.last_finished_at)}"
        console.print(f"  {source.url}\n    {scope}\n    {last}", markup=False, soft_wrap=True)


def add_kb_command(sub: Any) -> None:
    """`ragcord kb ...` (each subcommand takes --address)."""
    p = sub.add_parser(
        "kb", help="a knowledge base's description, instructions, sources, re-crawls, schedule"
    )
    kb = p.add_subparsers(dest="kb_command", required=True)

    def with_address(name: str, help_: str) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = kb.add_parser(name, help=help_)
        q.add_argument("--address", help="admin API address (default: RAGCORD_GRPC_ADDRESS)")
        return q

    for name, help_ in (
        ("create", "create a knowledge base"),
        ("update", "change its description or instructions"),
    ):
        q = with_address(name, help_)
        q.add_argument("name")
        q.add_argument("--description", help="what it holds (at most 2,000 characters)")
        group = q.add_mutually_exclusive_group()
        group.add_argument(
            "--instructions",
            help="how answers are written (lines `not found: ...`, `header: ...` steer the extractive one)",
        )
        group.add_argument("--instructions-file", metavar="PATH", help="the answer instructions from a file")
    q = with_address("show", "its counts, description, instructions, sources and schedule")
    q.add_argument("name")
    q.add_argument("--json", action="store_true", help="print JSON")
    q = with_address("recrawl", "crawl every source again (one job per source)")
    q.add_argument("name")
    q = with_address("schedule", "re-crawl on a schedule: NAME 1d|12h|30m|off; no NAME lists the schedules")
    q.add_argument("name", nargs="?")
    q.add_argument("every", nargs="?")
    q.add_argument("--json", action="store_true", help="print JSON (a list of objects) instead of a table")
    p.set_defaults(fn=cmd_kb)
