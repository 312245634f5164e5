"""Where the commands write: results on stdout, errors on stderr (rich markup, no auto-highlighting);
into a pipe or a file, each message on one line however long.

Listings come out three ways: a table sized to the terminal, tab-separated lines when stdout is not a
terminal (for `cut`, `awk` and scripts), or JSON with `--json`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from google.protobuf.message import Message


def _console(*, stderr: bool) -> Console:
    """A console that, into a pipe or a file, neither wraps nor crops: a message or a URL stays one line
    for the log, `grep` and the reader (rich would fold it at 80 columns, its width without a terminal)."""
    made = Console(stderr=stderr, highlight=False)
    made.soft_wrap = not made.is_terminal
    return made


console = _console(stderr=False)
err = _console(stderr=True)


@dataclass(frozen=True)
class Column:
    """One column of a listing and how it behaves when the terminal is narrow."""

    name: str
    min_width: int | None = None
    ratio: int | None = None  # share of the width left over; set on the columns that hold long values
    fold: bool = False  # long values (URLs) fold onto more lines instead of being cut short
    justify: Literal["left", "right"] = "left"
    needs_width: int = 0  # dropped from the table below this terminal width (never from TSV or JSON)


def build_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> Table:
    """A table for a terminal `width` columns wide: less important columns go first when it is narrow."""
    shown = [i for i, column in enumerate(columns) if width >= column.needs_width]
    table = Table(expand=width < 120)
    for i in shown:
        column = columns[i]
        table.add_column(
            column.name,
            min_width=column.min_width,
            ratio=column.ratio,
            overflow="fold" if column.fold else "ellipsis",
            no_wrap=not column.fold,
            justify=column.justify,
        )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table


def tsv(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    """A header line and one line per row, tab-separated; tabs and newlines inside cells become spaces."""

    def line(cells: Sequence[str]) -> str:
        return "\t".join(" ".join(cell.split()) if cell else "" for cell in cells)

    return "".join(line(cells) + "\n" for cells in [[c.name for c in columns], *rows])


def as_json(records: Sequence[Message]) -> str:
    """The records as a JSON list, fields named as in the .proto; unset fields are included for scripts."""
    from google.protobuf.json_format import MessageToDict

    return json.dumps(
        [
            MessageToDict(r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            for r in records
        ],
        indent=2,
        ensure_ascii=False,
    )


def print_listing(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    records: Sequence[Message],
    *,
    json_output: bool,
) -> None:
    """Print a listing as JSON, as a table on a terminal, or as tab-separated lines into a pipe or file."""
    if json_output:
        sys.stdout.write(as_json(records) + "\n")
    elif console.is_terminal:
        console.print(build_table(columns, rows, console.width))
    else:
        sys.stdout.write(tsv(columns, rows))
