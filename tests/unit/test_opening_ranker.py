"""bench/opening.py learns which section opens an answer from labelled choices (pure logic, no crawl)."""

from __future__ import annotations

from bench.opening import Candidates, chosen, leave_one_site_out, train
from ragcord.answering.extractive import OPENING_FEATURES


def row(**values: float) -> list[float]:
    return [values.get(name, 0.0) for name in OPENING_FEATURES]


def question(site: str, good_first: bool) -> Candidates:
    """Two choices: the one the embedder reads closest (cosine 1) holds the key term, the other scores
    higher by words; which comes first in the answerer's order alternates."""
    good = row(cosine=1.0, score=0.6, top_page=1.0)
    bad = row(cosine=0.4, score=1.0, top_page=1.0)
    features = [good, bad] if good_first else [bad, good]
    usable = [good_first, not good_first]
    return Candidates(f"{site}-{good_first}", site, features, usable, usable, [0, 1])


def test_the_ranker_learns_the_feature_that_marks_the_best_choice_and_scores_it_on_a_left_out_site():
    data = [question(site, first) for site in ("a", "b", "c") for first in (True, False)]
    w = train(data)
    assert w[OPENING_FEATURES.index("cosine")] > 0 > w[OPENING_FEATURES.index("score")]
    assert all(c.usable[chosen(c, w)] for c in data)
    table = leave_one_site_out(data)
    assert {site: row["learned"]["usable"] for site, row in table.items()} == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert table["a"]["today"]["usable"] == 0.5  # the hand rule opens with the top page's first quote


def test_the_hand_rule_opens_with_the_top_pages_first_quote_when_it_scores_close_enough():
    other_page = row(score=1.0)
    close = row(score=0.5, top_page=1.0)
    far = row(score=0.2, top_page=1.0)
    assert Candidates("q", "a", [other_page, close], [False, True], [False, True], [0, 1]).today() == 1
    assert Candidates("q", "a", [other_page, far], [False, True], [False, True], [0, 1]).today() == 0
