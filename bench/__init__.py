"""Benchmarks behind `make bench`; results go into docs/benchmarks.md."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

PLOTS = Path(__file__).resolve().parents[1] / "docs" / "bench"


def command_line(prog: str, description: str | None, run: Callable[[Path], tuple[str, str]]) -> None:
    """A benchmark run alone: `--plots DIR`, parsed so that `--help` answers instead of running it; prints
    its section of docs/benchmarks.md and its summary line."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--plots", type=Path, default=PLOTS, help="where the plots go")
    print(*run(parser.parse_args().plots), sep="\n")
