"""Answer quality on real documentation may not drop below what we reached (docs/quality.md).

The whole suite of tests/quality/ runs as `make bench` runs it: five Debian documentation sites served on
loopback, crawled and asked through the admin API of `ragcord serve` with the default settings (extractive
answerer, local embedder). The figures come from the answers, not from timings. Raise a floor when a change
lifts its figure; lowering one needs a reason in the commit.
"""

from __future__ import annotations

import os

import pytest

from bench.quality import render_markdown, run_suite
from tests.conftest import CI
from tests.quality.suite import load_suite
from tests.realsites.catalog import SITES
from tests.realsites.install import CannotInstall, install

# Crawling five sites with the local embedder takes 6-10 minutes here: past the suite's default timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

# figure -> (floor, higher is better). Reached on 2026-12-01 (docs/quality.md): hit@1 0.72, hit@5 0.92,
# MRR 0.79, key term 0.63, follow-up hit@5 0.91, off-topic refused 1.00, in-domain refused 0.03, fragments
# 0.00. Ranking is deterministic; the margin (about three questions, one follow-up) covers which of two
# identical pages a crawl indexes first.
FLOORS: dict[str, tuple[float, bool]] = {
    "hit1": (0.69, True),
    "hit5": (0.89, True),
    "mrr": (0.76, True),
    "key_term": (0.60, True),
    "followup_hit5": (0.85, True),
    "off_topic_refused": (1.00, True),
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


def test_answer_quality_stays_at_or_above_its_floors(redis_url, suite):
    results = run_suite(suite, redis_url=redis_url)
    figures = results.figures()
    if report := os.environ.get("RAGCORD_QUALITY_REPORT"):
        with open(report, "w", encoding="utf-8") as out:
            out.write(render_markdown(results.to_json(), None))
    print({name: figures[name] for name in FLOORS})
    assert all(crawl.state == "SUCCEEDED" for crawl in results.crawls), results.crawls
    below = {
        name: (figures[name], floor)
        for name, (floor, higher) in FLOORS.items()
        if figures[name] is None or (figures[name] < floor if higher else figures[name] > floor)
    }
    assert not below, f"quality dropped below its floor (figure, floor): {below}"
