"""`ragcord eval`: a team's golden set asked through the admin API, scored from the answers' citations.

Keep the set beside the docs and run it after a re-crawl or an upgrade: a drop in hit@1 or a new miss is a
regression a user would feel. `--export-feedback` writes the answers voted up in Discord as a starting set.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from cli.admin import Admin
from cli.console import console, err
from ragcord.evaluation import Reply, Report, evaluate, golden_from_feedback, load_golden
from ragcord.settings import Settings

ANSWER_TIMEOUT_SECONDS = 300
FEEDBACK_PAGE_SIZE = 500


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    kb = args.kb or settings.default_knowledge_base
    if args.export_feedback:
        return _export_feedback(admin, kb, args.file)
    if args.file is None:
        err.print("[red]error[/]: name the golden set: ragcord eval --kb KB questions.yaml")
        return 2
    golden = load_golden(Path(args.file))

    def ask(question: str, conversation_id: str) -> Reply:
        request = admin.pb.AskRequest(question=question, knowledge_base=kb, conversation_id=conversation_id)
        answer = admin.call("Ask", request, timeout=ANSWER_TIMEOUT_SECONDS)
        cited = tuple(c.url for c in answer.citations)
        return Reply(answer.text, cited, answer.found, answer.conversation_id)

    with console.status(f"asking {len(golden)} questions of {kb!r}…"):
        report = evaluate(golden, ask, new_conversation=lambda: f"eval-{uuid.uuid4().hex}")
    _print_report(report, kb, show=args.show_misses)
    return 0 if args.min_hit_at_5 is None or report.hit_at(5) >= args.min_hit_at_5 else 1


def _print_report(report: Report, kb: str, *, show: int) -> None:
    table = Table(title=f"{kb}: {report.count()} questions", title_justify="left")
    for column in ("", "questions", "hit@1", "hit@5", "MRR", "key term"):
        table.add_column(column, justify="right" if column else "left")
    rows: list[tuple[str, int | None]] = [("all", None), ("first turns", 1), ("follow-ups", 2)]
    for name, turn in rows:
        if report.count(turn) == 0 or (turn is not None and report.count(2) == 0):
            continue
        terms = report.key_terms(turn)
        table.add_row(
            name,
            str(report.count(turn)),
            f"{report.hit_at(1, turn):.2f}",
            f"{report.hit_at(5, turn):.2f}",
            f"{report.mrr(turn):.3f}",
            "-" if terms is None else f"{terms:.2f}",
        )
    console.print(table)
    misses = report.misses()
    if not misses:
        console.print("no misses: every expected page is among the first 5 citations")
        return
    console.print(f"[bold]{len(misses)} misses[/] (expected page not among the first 5 citations):")
    for scored in misses[:show]:
        which = " (follow-up)" if scored.turn == 2 else ""
        cited = ", ".join(scored.reply.cited[:3]) or "nothing"
        refused = "" if scored.reply.found else " · answered not found"
        console.print(f"- {scored.golden.question}{which}", markup=False)
        console.print(
            f"    expected {', '.join(scored.golden.expected)}; cited {cited}{refused}", markup=False
        )
    if len(misses) > show:
        console.print(f"  … and {len(misses) - show} more (--show-misses {len(misses)})")


def _export_feedback(admin: Admin, kb: str, path: str | None) -> int:
    entries: list[tuple[str, list[str], int, int]] = []
    token = ""
    while True:
        request = admin.pb.ListFeedbackRequest(
            knowledge_base=kb, page_size=FEEDBACK_PAGE_SIZE, page_token=token
        )
        page = admin.call("ListFeedback", request)
        entries += [(e.question, list(e.cited_urls), e.up, e.down) for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    rows: list[dict[str, Any]] = golden_from_feedback(entries)
    text = yaml.safe_dump({"questions": rows}, sort_keys=False, allow_unicode=True, width=110)
    if path is None or path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")
        err.print(f"wrote {len(rows)} questions voted up in {kb!r} to {path}; check each expected page")
    return 0


def add_eval_command(sub: Any, client: Callable[[Any, str, str], argparse.ArgumentParser]) -> None:
    """Register `eval` (`client` adds a subcommand that takes --address)."""
    p = client(sub, "eval", "score a golden set of questions (hit@1, hit@5, MRR) through the admin API")
    p.add_argument("file", nargs="?", help="YAML: a list of {question, expected, key_terms?, follow_up?}")
    p.add_argument("--kb", help="knowledge base (default: RAGCORD_DEFAULT_KNOWLEDGE_BASE)")
    p.add_argument("--show-misses", type=int, default=20, metavar="N", help="list at most N misses")
    p.add_argument("--min-hit-at-5", type=float, metavar="X", help="exit 1 when hit@5 is below X (for CI)")
    p.add_argument(
        "--export-feedback",
        action="store_true",
        help="write answers voted up in Discord as a golden set (to FILE, or stdout)",
    )
    p.set_defaults(fn=cmd_eval)
