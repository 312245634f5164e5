"""Answer quality on real documentation may not drop below what we reached (docs/quality.md).

The whole suite of tests/quality/ runs as `make bench` runs it: nine Debian documentation sites served on
loopback, crawled and asked through the admin API of `ragcord serve` with the default settings (extractive
answerer, local embedder). The figures come from the answers, not from timings. Raise a floor when a change
lifts its figure; lowering one needs a reason in the commit.
"""

from __future__ import annotations

import json
import os

import pytest

from bench.quality import render_markdown, run_suite
from tests.conftest import CI
from tests.harness import delete_prefixed_keys
from tests.quality.suite import load_suite
from tests.realsites.catalog import SITES
from tests.realsites.install import CannotInstall, install

# Crawling nine sites (~8,300 chunks) with the local embedder takes 8-11 minutes here: past the default
# timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

# figure -> (floor, higher is better), over the five sites the answering path was tuned on. Reached on
# 2026-12-01 (docs/quality.md): hit@1 0.73, hit@5 0.92, MRR 0.80, key term 0.66, follow-up hit@5 0.96,
# follow-up key term 0.73-0.77 (26 conversations, two crawls), off-topic refused 1.00, in-domain refused 0.02,
# fragments 0.00. On 2026-12-07 (issue 21, the Snowball stemmer): hit@1 0.73, hit@5 0.91, MRR 0.80, key term
# 0.65, usable 0.51, follow-up hit@5 0.96, follow-up key term 0.65 (one conversation fewer: the stemmer; the
# held-out follow-up key term rose 0.80 -> 0.85), in-domain refused 0.02. Ranking is deterministic; the margin
# (about three questions, one follow-up) covers which of two identical pages a crawl indexes first. Later
# that day (a question whose word the passages hold only in a table of contents is not found): missing-page
# questions refused 0.20 -> 0.60 (3 of 5), in process over one kept crawl; its floor is one question below.
# Then (the learned choice of the opening section, bench/opening.py): usable 0.51 -> 0.55, each tuned site
# asked with weights learned on the other four, in process over one kept crawl; floor four questions below.
# Session 10 (h-quote: a short code block alone is a quote, a short one after its sentence joins it): key
# term 0.64 -> 0.68, usable 0.55 -> 0.56, in process over the kept crawl (left out one site at a time: key
# term 0.64, usable 0.56); floors four questions below.
FLOORS: dict[str, tuple[float, bool]] = {
    "hit1": (0.69, True),
    "hit5": (0.88, True),
    "mrr": (0.76, True),
    "key_term": (0.64, True),
    "usable": (0.52, True),
    "followup_hit5": (0.90, True),
    "followup_key_term": (0.61, True),
    "off_topic_refused": (1.00, True),
    "missing_refused": (0.40, True),
    "wrongly_refused": (0.05, False),
    "fragment_answers": (0.02, False),
}
# The four sites nothing was ever tuned on (`tuned_on: false` in tests/quality/sites.yaml: go spec, SDL2,
# bash, Sphinx's docs): leave-one-site-out figures. Reached on 2026-12-07: hit@1 0.59, hit@5 0.84, MRR 0.72,
# key term 0.49, usable 0.35, follow-up hit@5 0.75 (8 conversations), in-domain refused 0.07, fragments 0.00;
# with main's SQLite store (same day): hit@1 0.60, hit@5 0.81, MRR 0.70, usable 0.38, follow-up hit@5 0.62.
# One conversation of 8 is 0.125: its floor sits one conversation below the lower of the two. With the
# few-page changes (search slots and See also, docs/quality-log.md), through `ragcord serve` on SQLite: hit@1
# 0.57, hit@5 0.92, MRR 0.72, key term 0.54, usable 0.38, follow-up hit@5 0.88 (7 of 8); one question of 37 is
# 0.027: floors about three questions (one conversation) below. With the learned opening choice (same day,
# in process over one kept crawl): hit@1 0.57 -> 0.68 (bash 0.11 -> 0.56), MRR 0.72 -> 0.78, usable 0.38 ->
# 0.41; floors three questions below.
NEVER_TUNED_FLOORS: dict[str, tuple[float, bool]] = {
    "hit1": (0.60, True),
    "hit5": (0.84, True),
    "mrr": (0.70, True),
    "key_term": (0.46, True),
    "usable": (0.33, True),
    "followup_hit5": (0.75, True),
    "wrongly_refused": (0.11, False),
    "fragment_answers": (0.02, False),
}
# The held-out set (tests/quality/heldout.yaml, docs/heldout/quality.md) of the five tuned sites, asked over
# the same crawl: hit@1 0.82-0.83 (crawls differ), hit@5 0.96, MRR 0.88-0.89, key term 0.58-0.63, follow-up
# hit@5 1.00, follow-up key term 0.75-0.85, in-domain refused 0.01, fragments 0.00. Its floors keep a change
# tuned on the suite from costing questions nobody tuned on.
HELD_OUT_FLOORS: dict[str, tuple[float, bool]] = {
    "hit1": (0.80, True),
    "hit5": (0.93, True),
    "mrr": (0.86, True),
    "key_term": (0.55, True),
    "followup_hit5": (0.95, True),
    "followup_key_term": (0.70, True),
    "wrongly_refused": (0.05, False),
    "fragment_answers": (0.02, False),
}


@pytest.fixture(scope="module")
def suite():
    """The suite, its sites' doc packages installed when missing (they are the real-site matrix's)."""
    try:
        install(SITES)
    except CannotInstall as exc:
        if CI:
            raise
        pytest.skip(f"the quality suite's documentation sites are not installed: {exc}")
    return load_suite()


def _below(figures: dict, floors: dict[str, tuple[float, bool]]) -> dict[str, tuple[float | None, float]]:
    return {
        name: (figures[name], floor)
        for name, (floor, higher) in floors.items()
        if figures[name] is None or (figures[name] < floor if higher else figures[name] > floor)
    }


def test_answer_quality_stays_at_or_above_its_floors(redis_url, suite, tmp_path):
    keep = tmp_path / "crawls"  # crawled once, asked twice: the suite, then the held-out set
    try:
        results = run_suite(suite, redis_url=redis_url, keep=keep)
        held_out = run_suite(load_suite(questions="heldout.yaml"), redis_url=redis_url, keep=keep)
    finally:
        if (state := keep / "crawls.json").is_file():
            delete_prefixed_keys(redis_url, json.loads(state.read_text())["prefix"])
    never = {name for name, site in suite.sites.items() if not site.tuned_on}
    tuned = set(suite.sites) - never
    figures, never_figures = results.figures(sites=tuned), results.figures(sites=never)
    held_out_figures = held_out.figures(sites=tuned)
    if report := os.environ.get("RAGCORD_QUALITY_REPORT"):
        with open(report, "w", encoding="utf-8") as out:
            out.write(render_markdown(results.to_json(), None))
    print({name: figures[name] for name in FLOORS})
    print("never tuned on:", {name: never_figures[name] for name in NEVER_TUNED_FLOORS})
    print("held out:", {name: held_out_figures[name] for name in HELD_OUT_FLOORS})
    assert all(crawl.state == "SUCCEEDED" for crawl in results.crawls), results.crawls
    below = _below(figures, FLOORS)
    assert not below, f"quality dropped below its floor (figure, floor): {below}"
    below = _below(never_figures, NEVER_TUNED_FLOORS)
    assert not below, f"quality on the sites never tuned on dropped below its floor (figure, floor): {below}"
    below = _below(held_out_figures, HELD_OUT_FLOORS)
    assert not below, f"quality on the held-out set dropped below its floor (figure, floor): {below}"
