"""`make bench`: run the benchmarks, write docs/benchmarks.md, print one comparable line per benchmark.

Each benchmark is a module of this package with `run(plots) -> (markdown, line)`: it measures (ratios within
one run: these machines are shared and noisy), draws its PNG plots into docs/bench/, and returns its section
of docs/benchmarks.md and one `name: key=value ...` line. Each section is kept in docs/bench/<name>.md, so
`--only` re-runs some and docs/benchmarks.md is put together again from all of them; every line is also
appended to docs/bench/history.tsv, and the report shows each benchmark's previous line beside its newest
(the trend). The answer-quality suite (bench/quality.py) writes docs/quality.md itself; its summary is a
section here too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench import PLOTS

DOCS = PLOTS.parent
HISTORY = PLOTS / "history.tsv"

# In the order of docs/benchmarks.md. `quality` re-crawls five real sites: the longest by far.
BENCHMARKS = (
    "embedder",
    "footprint",
    "pipeline",
    "peers",
    "costs",
    "extraction",
    "render",
    "ask",
    "store",
    "recrawl",
    "watch",
    "jobs",
    "quality",
)

HEADER = """# Benchmarks

Written by `make bench` (`python -m bench`; `--only NAME,...` re-runs some, `--list` names them). These
machines are shared and noisy (2 cores): each headline figure is a ratio measured within one run, and each
section says when and how it was measured. Plots are in docs/bench/; every run's summary lines are appended
to docs/bench/history.tsv. Earlier hand-written measurements: docs/benchmarks-history.md.
"""


def available() -> list[str]:
    return [name for name in BENCHMARKS if (Path(__file__).parent / f"{name}.py").exists()]


def run_one(name: str) -> tuple[str, str]:
    module = importlib.import_module(f"bench.{name}")
    markdown, line = module.run(PLOTS)
    return markdown, line


def trend() -> list[str]:
    """Each benchmark's newest line and the one before it, from docs/bench/history.tsv."""
    if not HISTORY.exists():
        return []
    by_name: dict[str, list[tuple[str, str]]] = {}
    for row in HISTORY.read_text().splitlines():
        when, name, line = row.split("\t", 2)
        by_name.setdefault(name, []).append((when, line))
    rows = ["| benchmark | newest | previous |", "|---|---|---|"]
    for name in available():
        runs = by_name.get(name, [])
        if runs:
            newest = f"{runs[-1][0]}: `{runs[-1][1]}`"
            previous = f"{runs[-2][0]}: `{runs[-2][1]}`" if len(runs) > 1 else "–"
            rows.append(f"| {name} | {newest} | {previous} |")
    return ["## Trend", "", *rows, ""]


def assemble() -> str:
    kept = [PLOTS / f"{name}.md" for name in available()]
    sections = [path.read_text().rstrip() + "\n" for path in kept if path.exists()]
    return "\n".join([HEADER, *trend(), *sections])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated benchmarks to run (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--list", action="store_true", help="name the benchmarks and exit")
    args = parser.parse_args(argv)
    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    chosen = args.only.split(",") if args.only else names
    if unknown := set(chosen) - set(names) | set(filter(None, args.skip.split(","))) - set(names):
        parser.error(f"unknown benchmarks {sorted(unknown)}; known: {', '.join(names)}")
    chosen = [name for name in chosen if name not in args.skip.split(",")]
    PLOTS.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for name in chosen:
        print(f"bench: running {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            markdown, line = run_one(name)
        except Exception:  # noqa: BLE001 - one broken benchmark must not lose the others' results
            traceback.print_exc()
            failed.append(name)
            continue
        (PLOTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
        with HISTORY.open("a") as history:
            history.write(f"{time.strftime('%Y-%m-%d %H:%M')}\t{name}\t{line}\n")
        print(line, flush=True)
        print(f"bench: {name} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        (DOCS / "benchmarks.md").write_text(assemble())
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
