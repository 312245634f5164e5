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
from rich.markup import escape
from rich.table import Table

from cli.admin import Admin
from cli.answers import check_knowledge_base
from cli.console import console, err
from ragcord.errors import InvalidArgument
from ragcord.evaluation import Reply, Report, evaluate, golden_from_feedback, load_golden
from ragcord.settings import Settings

ANSWER_TIMEOUT_SECONDS = 300
FEEDBACK_PAGE_SIZE = 500
EXIT_BELOW = 1  # also: a failed call (unknown knowledge base, no server), nothing to export
EXIT_BAD_INPUT = 2  # the golden set itself or the arguments: fix the file, not the docs
EXIT_CODES = """\
exit codes:
  0  scored (at or above --min-hit-at-5 when given), or the voted answers exported
  1  hit@5 below --min-hit-at-5; the admin API failed (unknown --kb, no server); nothing to export
  2  the golden file is unreadable, not YAML, or has a wrong shape, field or key; or bad arguments"""


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    kb = args.kb or settings.default_knowledge_base
    if args.export_feedback:
        return _export_feedback(admin, kb, args.file)
    if args.file is None:
        err.print("[red]error[/]: name the golden set: ragcord eval --kb KB questions.yaml")
        return EXIT_BAD_INPUT
    try:
        golden = load_golden(Path(args.file))
    except InvalidArgument as exc:  # before any question is asked, and apart from a regression (exit 1)
        err.print(f"[red]error[/]: {escape(str(exc))}")
        return EXIT_BAD_INPUT

    def ask(question: str, conversation_id: str) -> Reply:
        request = admin.pb.AskRequest(question=question, knowledge_base=kb, conversation_id=conversation_id)
        answer = admin.call("Ask", request, timeout=ANSWER_TIMEOUT_SECONDS)
        cited = tuple(c.url for c in answer.citations)
        return Reply(answer.text, cited, answer.found, answer.conversation_id)

    with console.status(f"asking {len(golden)} questions of {kb!r}…"):
        report = evaluate(golden, ask, new_conversation=lambda: f"eval-{uuid.uuid4().hex}")
    _print_report(report, kb, show=args.show_misses)
    return _check_floor(report.hit_at(5), args.min_hit_at_5)


def _check_floor(hit_at_5: float, floor: float | None) -> int:
    """CI reads the exit code; whoever opens its log reads this line to learn why it failed."""
    if floor is None or hit_at_5 >= floor:
        return 0
    shown, wanted = _apart(hit_at_5, floor)
    err.print(f"hit@5 {shown} is below --min-hit-at-5 {wanted}", markup=False)
    return EXIT_BELOW


def _apart(value: float, floor: float) -> tuple[str, str]:
    """Both figures with 2 decimals, or more when 2 would print 0.90 below 0.90."""
    for decimals in range(2, 7):
        shown, wanted = f"{value:.{decimals}f}", f"{floor:.{decimals}f}"
        if shown != wanted:
            break
    return shown, wanted


def fraction(text: str) -> float:
    """argparse type of --min-hit-at-5: hit@5 is a share of the questions, so 1.5 could never pass."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number from 0 to 1: give a share of the questions, such as 0.9"
        )
    return value


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
    check_knowledge_base(admin, kb)  # ListFeedback answers an unknown one with an empty list
    entries = _feedback(admin, kb)
    rows: list[dict[str, Any]] = golden_from_feedback(entries)
    if not rows:  # `questions: []` is a file eval rejects: better no file and a reason
        err.print(_nothing_to_export(kb, entries), markup=False)
        return EXIT_BELOW
    text = yaml.safe_dump({"questions": rows}, sort_keys=False, allow_unicode=True, width=110)
    if path is None or path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")
        err.print(f"wrote {len(rows)} questions voted up in {kb!r} to {path}; check each expected page")
    return 0


def _nothing_to_export(kb: str, entries: list[tuple[str, list[str], int, int]]) -> str:
    """Why no question came of the votes: none voted up, or none more up than down with a citation."""
    if not any(up for _, _, up, _ in entries):
        return f"no answers in {kb!r} have been voted 👍 yet: nothing to export"
    return f"no answer in {kb!r} has more 👍 than 👎 votes and a citation: nothing to export"


def _feedback(admin: Admin, kb: str) -> list[tuple[str, list[str], int, int]]:
    """Every voted answer in `kb`, page by page: (question, cited urls, up, down)."""
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
            return entries


def add_eval_command(sub: Any, client: Callable[[Any, str, str], argparse.ArgumentParser]) -> None:
    """Register `eval` (`client` adds a subcommand that takes --address)."""
    p = client(sub, "eval", "score a golden set of questions (hit@1, hit@5, MRR) through the admin API")
    p.description = "Score a golden set of questions (hit@1, hit@5, MRR) through the admin API."
    p.epilog = EXIT_CODES
    p.formatter_class = argparse.RawDescriptionHelpFormatter  # the exit codes, one a line
    p.add_argument("file", nargs="?", help="YAML: a list of {question, expected, key_terms?, follow_up?}")
    p.add_argument("--kb", help="knowledge base (default: RAGCORD_DEFAULT_KNOWLEDGE_BASE)")
    p.add_argument("--show-misses", type=int, default=20, metavar="N", help="list at most N misses")
    p.add_argument(
        "--min-hit-at-5", type=fraction, metavar="X", help="exit 1 when hit@5 is below X, 0 to 1 (for CI)"
    )
    p.add_argument(
        "--export-feedback",
        action="store_true",
        help="write answers voted up in Discord as a golden set (to FILE, or stdout)",
    )
    p.set_defaults(fn=cmd_eval)
