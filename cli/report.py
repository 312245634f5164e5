"""`ragcord report`: what the documentation is missing, through the admin API (GetQuestionStats and
ListUnanswered) as tables, and a PNG chart of questions per day and the answered rate (matplotlib, imported
only here: without it the tables still print and the command says how to get the chart)."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from cli.admin import Admin, local_time
from cli.console import console, err
from ragcord.settings import Settings

_SINCE = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def since_seconds(value: str, *, now: float | None = None) -> float:
    """`7d`, `12h`, `2w` back from now, or a date `YYYY-MM-DD` (UTC); argparse's type for --since."""
    now = time.time() if now is None else now
    match = _SINCE.match(value.strip())
    if match:
        return now - int(match.group(1)) * _UNITS[match.group(2)]
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration or a date: use e.g. 7d, 12h, 2w or 2026-12-01"
        ) from None


def _percent(value: float, of: int) -> str:
    return f"{value * 100:.0f}%" if of else "-"


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    admin = Admin(settings, args.address)
    kb = args.kb or settings.default_knowledge_base
    from google.protobuf.timestamp_pb2 import Timestamp

    since = Timestamp()
    since.FromNanoseconds(int(args.since * 1e9))
    stats = admin.call("GetQuestionStats", admin.pb.GetQuestionStatsRequest(knowledge_base=kb, since=since))
    unanswered = admin.call("ListUnanswered", admin.pb.ListUnansweredRequest(knowledge_base=kb, since=since))

    days = Table(
        title=f"Questions in {kb} since {datetime.fromtimestamp(args.since).strftime('%Y-%m-%d %H:%M')}"
    )
    for name in ("day", "questions", "answered", "👍", "👎", "handed off", "solved", "solved w/o staff"):
        days.add_column(name, justify="left" if name == "day" else "right")
    for d in [*stats.days, stats.total]:
        days.add_row(
            d.day or "[bold]total[/]",
            str(d.questions),
            f"{d.answered} ({_percent(d.answered_rate, d.questions)})",
            f"{d.up} ({_percent(d.up_rate, d.up + d.down)})",
            str(d.down),
            str(d.handed_off),
            str(d.solved),
            str(d.solved_without_staff),
        )
    console.print(days)

    clusters = Table(
        title=f"Unanswered: {unanswered.questions} questions in {len(unanswered.clusters)} groups"
    )
    clusters.add_column("asked", justify="right")
    clusters.add_column("latest")
    clusters.add_column("examples", ratio=1, overflow="fold")
    for c in unanswered.clusters:
        clusters.add_row(str(c.count), local_time(c.latest_at), "\n".join(c.examples))
    console.print(clusters)

    if args.png:
        return write_chart(args.png, kb, [(d.day, d.questions, d.answered_rate) for d in stats.days])
    return 0


def write_chart(path: str, kb: str, days: Sequence[tuple[str, int, float]]) -> int:
    """Questions per day (bars) and the answered rate (line) as a PNG; 0 when written."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: write files only
        import matplotlib.pyplot as plt
    except ImportError:
        err.print(
            "no chart: matplotlib is not installed (pip install 'ragcord[report]'); "
            "the tables above are complete"
        )
        return 0
    fig, questions = plt.subplots(figsize=(8, 4))
    labels = [d[0] for d in days]
    questions.bar(labels, [d[1] for d in days], color="#5865F2", label="questions")
    questions.set_ylabel("questions")
    rate = questions.twinx()
    rate.plot(labels, [d[2] * 100 for d in days], color="#3BA55C", marker="o", label="answered %")
    rate.set_ylim(0, 100)
    rate.set_ylabel("answered %")
    questions.set_title(f"ragcord: questions per day in {kb}")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    console.print(f"chart written to {path}")
    return 0


def add_report_command(sub: Any, client: Callable[[Any, str, str], argparse.ArgumentParser]) -> None:
    """Register `report` (`client` adds a subcommand that takes --address)."""
    p = client(sub, "report", "questions per day, answered rate, and the unanswered questions grouped")
    p.add_argument("--kb", help="knowledge base (default: RAGCORD_DEFAULT_KNOWLEDGE_BASE)")
    p.add_argument(
        "--since",
        type=since_seconds,
        default=since_seconds("7d"),
        metavar="WHEN",
        help="7d (default), 12h, 2w, or a date YYYY-MM-DD",
    )
    p.add_argument(
        "--png", default="ragcord-report.png", metavar="FILE", help="chart file (default ragcord-report.png)"
    )
    p.add_argument("--no-png", dest="png", action="store_const", const="", help="no chart")
    p.set_defaults(fn=cmd_report)
