"""Learn the search's second stage (`RerankTuning.weights`), leaving each site out.

Every in-domain question and follow-up of the sites tuned on (`tuned_on: true` in tests/quality/sites.yaml;
the others are never asked) is asked in process over a kept crawl, the search's candidates recorded with
their `RERANK_FEATURES` and two labels: the chunk holds a key term, and it is an expected page/section. A
listwise logistic ranker (`bench.opening.listwise`) is trained on four sites and scored on the fifth: what
the five passages the answerer reads hold, in the learned order against the first stage's; then trained on
all five, which gives the weights to ship. `--ask` asks each tuned site with the weights learned on the
other four and prints the suite's figures beside the first stage's.

    python -m bench.quality --keep DIR           # once: crawl and keep
    python -m bench.rerank --keep DIR --ask
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import numpy as np

from bench.opening import (
    ASKED,
    PENALTY,
    ask_tuned,
    learning_parser,
    left_out_table,
    listwise,
    recorded,
    weights_lines,
)
from bench.quality import REDIS_URL, CrawlResult, InProcess, ItemResult, Results, _ask_site, score
from ragcord import evaluation
from ragcord.answering.types import cited_url
from ragcord.knowledge import rerank
from ragcord.knowledge.search import Hit
from tests.quality.suite import Suite, load_suite

log = logging.getLogger(__name__)

TOP = 5  # the passages the answerer reads (`AnswerTuning.considered`, `Settings.top_k`)
PER_SOURCE = 2  # `Retriever.per_source`


@dataclass
class Searched:
    """One question's search candidates: features, labels and pages, in the first stage's order."""

    item: str
    site: str
    features: list[list[float]]
    key: list[bool]
    hit: list[bool]
    urls: list[str]

    def label(self, index: int) -> int:
        return int(self.key[index]) + int(self.hit[index])

    def top(self, order: Sequence[int]) -> list[int]:
        """The passages the answerer would read: `Retriever`'s diversified top (see `search.diversify`)."""
        taken: list[int] = []
        skipped: list[int] = []
        per_url: dict[str, int] = {}
        for i in order:
            if len(taken) == TOP:
                break
            if per_url.get(self.urls[i], 0) >= PER_SOURCE:
                skipped.append(i)
                continue
            per_url[self.urls[i]] = per_url.get(self.urls[i], 0) + 1
            taken.append(i)
        return taken + skipped[: TOP - len(taken)]


def _tuning(weights: Sequence[float]) -> rerank.RerankTuning:
    return rerank.RerankTuning(weights=tuple(float(w) for w in weights))


def collect(suite: Suite, keep: Path, *, redis_url: str = REDIS_URL) -> list[Searched]:
    """Ask the tuned sites' in-domain items in process and record each search's candidates."""
    kept = json.loads((keep / "crawls.json").read_text())
    bases = {c["site"]: c["base_url"] for c in kept["crawls"]}
    tuned = {name for name, site in suite.sites.items() if site.tuned_on}
    current: dict[str, Any] = {}
    recorded: list[Searched] = []
    original = rerank.candidate_features

    def recording(query: str, candidates: Sequence[rerank.Candidate]) -> list[list[float]]:
        rows = original(query, candidates)
        if current and not current.get("done"):
            expected = [urljoin(bases[current["site"]] + "/", e) for e in current["expected"]]
            key = [evaluation.has_key_term(current["key_terms"], c.chunk.text) is True for c in candidates]
            hit = [evaluation.rank(expected, [cited_url(Hit(c.chunk, 0.0))]) == 1 for c in candidates]
            urls = [c.chunk.url for c in candidates]
            recorded.append(Searched(current["id"], current["site"], rows, key, hit, urls))
            current["done"] = True  # one search an item
        return rows

    rerank.candidate_features = recording  # type: ignore[assignment]
    try:
        with InProcess(keep, redis_url, kept["prefix"]) as deployment:
            _second_stage(deployment, [0.0] * len(rerank.RERANK_FEATURES))  # the first stage's order
            ask_tuned(deployment, suite, tuned, current, f"rerank{uuid.uuid4().hex[:8]}")
    finally:
        rerank.candidate_features = original  # type: ignore[assignment]
    return recorded


def _second_stage(deployment: InProcess, weights: Sequence[float] | None) -> None:
    """Search with these weights from now on (None: the first stage only); remembered searches forgotten."""
    remembered = deployment.service.retriever
    remembered.retriever.second_stage = None if weights is None else _tuning(weights)  # type: ignore[attr-defined]
    remembered.seen.clear()  # type: ignore[attr-defined]


def train(data: list[Searched], penalty: float = PENALTY) -> np.ndarray:
    lists = [(np.array(s.features), np.array([s.label(i) for i in range(len(s.urls))])) for s in data]
    return listwise(lists, len(rerank.RERANK_FEATURES), penalty)


def learned(s: Searched, w: np.ndarray) -> list[int]:
    return rerank.learned_order(s.features, [float(v) for v in w])


def tally(data: list[Searched], orders: list[list[int]]) -> dict[str, float]:
    n = len(data) or 1
    tops = [s.top(order) for s, order in zip(data, orders, strict=True)]
    return {
        "hit1": sum(bool(top) and s.hit[top[0]] for s, top in zip(data, tops, strict=True)) / n,
        "hit5": sum(any(s.hit[i] for i in top) for s, top in zip(data, tops, strict=True)) / n,
        "key5": sum(any(s.key[i] for i in top) for s, top in zip(data, tops, strict=True)) / n,
        "key1": sum(bool(top) and s.key[top[0]] for s, top in zip(data, tops, strict=True)) / n,
    }


def leave_one_site_out(data: list[Searched], penalty: float = PENALTY) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for site in sorted({s.site for s in data}):
        w = train([s for s in data if s.site != site], penalty)
        left = [s for s in data if s.site == site]
        table[site] = {
            "items": len(left),
            "first stage": tally(left, [list(range(len(s.urls))) for s in left]),
            "learned": tally(left, [learned(s, w) for s in left]),
            "any candidate": {
                key: sum(any(getattr(s, name)) for s in left) / (len(left) or 1)
                for key, name in (("hit1", "hit"), ("hit5", "hit"), ("key5", "key"), ("key1", "key"))
            },
        }
    return table


def asked_left_out(
    suite: Suite, keep: Path, data: list[Searched], *, redis_url: str = REDIS_URL
) -> tuple[Results, Results]:
    """The suite's figures of the tuned sites: the first stage alone, and each site with weights learned
    on the other tuned sites."""
    kept = json.loads((keep / "crawls.json").read_text())
    crawls = [CrawlResult(**c) for c in kept["crawls"] if c["site"] in suite.sites]
    before: list[ItemResult] = []
    after: list[ItemResult] = []
    with InProcess(keep, redis_url, kept["prefix"]) as deployment:
        for site in sorted({s.site for s in data}):
            for weights, items in (
                (None, before),
                (train([s for s in data if s.site != site]), after),
            ):
                _second_stage(deployment, weights)
                results = Results(settings={}, crawls=crawls)
                results.items = _ask_site(
                    deployment, suite, suite.sites[site], f"rerank{uuid.uuid4().hex[:8]}"
                )
                score(results, suite)
                items += results.items
    return (
        Results(settings={"rerank": "off"}, crawls=crawls, items=before),
        Results(settings={"rerank": "left out"}, crawls=crawls, items=after),
    )


def render(table: dict[str, Any], w: np.ndarray) -> str:
    ways = ("first stage", "learned", "any candidate")
    lines = left_out_table(table, ways, {key: key for key in ("hit1", "hit5", "key1", "key5")})
    return "\n".join([*lines, *weights_lines(rerank.RERANK_FEATURES, w, "weights")])


def main(argv: list[str] | None = None) -> None:
    args = learning_parser("python -m bench.rerank", __doc__.split("\n")[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    data = recorded(args.data, lambda: collect(load_suite(), args.keep), Searched)
    print(render(leave_one_site_out(data, args.penalty), train(data, args.penalty)))
    if args.ask:
        before, after = asked_left_out(load_suite(), args.keep, data)
        print("\nAsked, the first stage alone -> each tuned site with weights trained on the others:")
        for site in [None, *sorted({s.site for s in data})]:
            was, now = before.figures(site), after.figures(site)
            shown = ", ".join(
                f"{k} {was[k]:.2f} -> {v:.2f}" for k, v in now.items() if v is not None and k in ASKED
            )
            print(f"- {site or 'all tuned sites'}: {shown}")


if __name__ == "__main__":
    main()
