"""bench/rerank.py learns the search's second stage from labelled candidates (pure logic, no crawl)."""

from __future__ import annotations

from bench.rerank import Searched, learned, leave_one_site_out, train
from ragcord.knowledge.rerank import RERANK_FEATURES


def row(**values: float) -> list[float]:
    return [values.get(name, 0.0) for name in RERANK_FEATURES]


def searched(site: str, pages: int = 6) -> Searched:
    """The first stage ranks a chunk of each page first; only the one with a code block holds the key term,
    and it comes last."""
    features = [row(fused=1.0 - i / 10) for i in range(pages - 1)] + [row(fused=0.3, code_block=1.0)]
    key = [False] * (pages - 1) + [True]
    return Searched(f"{site}-q", site, features, key, key, [f"p{i}" for i in range(pages)])


def test_the_ranker_learns_the_feature_that_marks_the_answer_and_scores_it_on_a_left_out_site():
    data = [searched(site) for site in ("a", "b", "c")]
    w = train(data)
    assert w[RERANK_FEATURES.index("code_block")] > 0
    assert all(s.key[learned(s, w)[0]] for s in data)
    table = leave_one_site_out(data)
    assert {site: r["learned"]["key1"] for site, r in table.items()} == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert table["a"]["first stage"]["key5"] == 0.0  # sixth of six pages: not among the five read


def test_the_five_read_are_diversified_as_the_retriever_does():
    s = Searched("q", "a", [row()] * 4, [False] * 4, [False] * 4, ["p", "p", "p", "q"])
    assert s.top([0, 1, 2, 3]) == [0, 1, 3, 2]  # a page's third chunk only after the other pages
