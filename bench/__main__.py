"""`make bench`: run every benchmark and print Markdown for docs/benchmarks.md (quality: docs/quality.md)."""

from __future__ import annotations

import argparse

from bench import crawl, jobs, quality, retrieval


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--repeat", type=int, default=3, help="how many times the site is indexed per stage")
    args = parser.parse_args()
    crawl.main(repeat=args.repeat)
    retrieval.main()
    jobs.main()
    quality.main([])  # answer quality on real doc sites; writes docs/quality.{md,json}
    quality.main(["--held-out"])  # the questions nothing was tuned on; writes docs/heldout/quality.{md,json}


main()
