"""A re-crawl with nothing changed against the first crawl of the same site (issue 22): time and embeddings.

    python -m bench.recrawl [--max-pages 200]

Python's own documentation (Debian's python3.11-doc, served from disk on loopback by a plain static server,
which answers If-Modified-Since with 304) scoped as tests/quality/sites.yaml scopes it, crawled twice into
one knowledge base with the local embedder and a real Dramatiq worker; the second crawl is incremental.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from ragcord.knowledge.embedders import Embedder
from tests.harness import crawl, local_services
from tests.realsites.server import DocSite

SITES = Path(__file__).resolve().parents[1] / "tests" / "quality" / "sites.yaml"


class CountingEmbedder:
    """The embedder, counting its calls and the texts it embedded."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed(texts)


def measure(max_pages: int = 0, redis_url: str = "redis://127.0.0.1:6379/0") -> tuple[str, list[tuple]]:
    """The first crawl and the re-crawl: (seed url, rows of label, seconds, job, embed calls, texts)."""
    python = next(s for s in yaml.safe_load(SITES.read_text())["sites"] if s["name"] == "python")
    root = Path(python["root"])
    with tempfile.TemporaryDirectory() as data, DocSite(root) as site:
        with local_services(redis_url, Path(data), name="bench-recrawl") as services:
            counting = CountingEmbedder(services.embedder)
            services.embedder = counting  # type: ignore[assignment]
            request: dict[str, Any] = {
                "max_pages": max_pages or python["max_pages"],
                "include_patterns": python.get("include", []),
                "exclude_patterns": python.get("exclude", []),
            }
            url = site.url("/" + python["seed"])
            rows = []
            for label in ("first crawl", "re-crawl, nothing changed"):
                counting.calls = counting.texts = 0
                started = time.monotonic()
                job = crawl(services.settings, services, url, "python", timeout=1800, **request)
                seconds = time.monotonic() - started
                rows.append((label, seconds, job, counting.calls, counting.texts))
    return url, rows


def run(plots: Path, *, max_pages: int = 0) -> tuple[str, str]:
    """The section of docs/benchmarks.md and its summary line (`plots` unused: two rows need no plot)."""
    url, rows = measure(max_pages)
    (_, first_s, _, first_calls, _), (_, again_s, again, again_calls, again_texts) = rows
    lines = [
        "## A re-crawl with nothing changed against the first crawl (issue 22)",
        "",
        f"{date.today().isoformat()}, `python -m bench.recrawl`: Python's documentation (python3.11-doc, "
        "scoped as tests/quality/sites.yaml scopes it) served from disk on loopback by a static server that "
        "answers If-Modified-Since with 304, crawled twice into one knowledge base (local embedder, default "
        "store, one worker x 2 threads); the second crawl is incremental.",
        "",
        "| crawl | state | seconds | pages | added | updated | unchanged | removed | chunks "
        "| embed calls (texts) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, seconds, job, calls, texts in rows:
        lines.append(
            f"| {label} | {job.state.value} | {seconds:.1f} | {job.pages_done} | {job.pages_added} | "
            f"{job.pages_updated} | {job.pages_unchanged} | {job.pages_removed} | {job.chunks_indexed} | "
            f"{calls} ({texts}) |"
        )
    ratio = again_s / first_s if first_s else 0.0
    lines += [
        "",
        f"The re-crawl took {100 * ratio:.1f}% of the first crawl's time, "
        f"with {again_calls} embedding calls.",
    ]
    summary = (
        f"recrawl: time_ratio={ratio:.3f} first_s={first_s:.1f} again_s={again_s:.1f} "
        f"embed_calls_first={first_calls} embed_calls_again={again_calls} unchanged={again.pages_unchanged}"
    )
    return "\n".join(lines) + "\n", summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--max-pages", type=int, default=0, help="default: the quality suite's (200)")
    args = parser.parse_args(argv)
    markdown, line = run(Path(tempfile.gettempdir()), max_pages=args.max_pages)
    print(markdown)
    print(line)


if __name__ == "__main__":
    main()
