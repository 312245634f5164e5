"""Per-site figures of a real-site run, written as JSON (and a markdown table beside it) for the notes."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

_URL = re.compile(r"https?://\S+")
_NUMBER = re.compile(r"(?<!HTTP )\b\d+\b")  # an HTTP status stays: 404 and 500 differ


def reason_group(detail: str) -> str:
    """A skip or failure reason without its URLs and numbers, so alike reasons count together."""
    return _NUMBER.sub("N", _URL.sub("<url>", detail)).strip() or "(no reason given)"


def grouped(details: list[str]) -> dict[str, int]:
    return dict(Counter(reason_group(d) for d in details).most_common())


@dataclass
class SiteFigures:
    """What one site's crawl did, against what the files on disk say it should have done."""

    site: str
    generator: str
    package: str
    state: str = ""
    in_scope: int = 0
    link_targets: int = 0
    indexed: int = 0
    indexed_in_scope: int = 0
    coverage: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0
    title_mismatches: int = 0
    title_examples: list[str] = field(default_factory=list)
    title_collapse_share: float = 0.0
    chunks_sampled: int = 0
    boilerplate_hits: int = 0
    boilerplate_examples: list[str] = field(default_factory=list)
    not_indexed_examples: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the assertions that did not hold


class Report:
    """Collects SiteFigures and rewrites the report file after every site, so a partial run leaves one."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.sites: dict[str, SiteFigures] = {}

    def add(self, figures: SiteFigures) -> None:
        self.sites[figures.site] = figures
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps([asdict(f) for f in self.sites.values()], indent=2) + "\n")
            self.path.with_suffix(".md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = [
            "| site | state | in scope | indexed | coverage | skipped | failed | chunks | s "
            "| bad titles | boilerplate chunks | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in self.sites.values():
            skipped = "; ".join(f"{n}× {r}" for r, n in f.skipped.items()) or "0"
            failed = "; ".join(f"{n}× {r}" for r, n in f.failed.items()) or "0"
            verdict = "ok" if not f.failures else "FAIL: " + "; ".join(f.failures)
            lines.append(
                f"| {f.site} | {f.state} | {f.in_scope} | {f.indexed_in_scope} | {f.coverage:.1%} "
                f"| {skipped} "
                f"| {failed} | {f.chunks} | {f.seconds:.0f} | {f.title_mismatches} "
                f"| {f.boilerplate_hits}/{f.chunks_sampled} | {verdict} |"
            )
        return "\n".join(lines) + "\n"
