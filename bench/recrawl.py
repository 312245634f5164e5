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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--max-pages", type=int, default=0, help="default: the quality suite's (200)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    python = next(s for s in yaml.safe_load(SITES.read_text())["sites"] if s["name"] == "python")
    root = Path(python["root"])
    with tempfile.TemporaryDirectory() as data, DocSite(root) as site:
        with local_services(args.redis_url, Path(data), name="bench-recrawl") as services:
            counting = CountingEmbedder(services.embedder)
            services.embedder = counting  # type: ignore[assignment]
            request: dict[str, Any] = {
                "max_pages": args.max_pages or python["max_pages"],
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
    print(f"python3.11-doc, {url} scoped as tests/quality/sites.yaml, local embedder, 1 worker x 2 threads")
    for label, seconds, job, calls, texts in rows:
        print(
            f"{label:28} {job.state.value:9} {seconds:7.1f} s  pages {job.pages_done:4} "
            f"(added {job.pages_added}, updated {job.pages_updated}, unchanged {job.pages_unchanged}, "
            f"removed {job.pages_removed})  chunks {job.chunks_indexed:5}  "
            f"embed calls {calls:4} ({texts} texts)"
        )
    first, second = rows[0][1], rows[1][1]
    print(f"re-crawl time: {100 * second / first:.1f}% of the first crawl's")


if __name__ == "__main__":
    main()
