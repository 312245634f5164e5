"""Learn which section opens an extractive answer (`AnswerTuning.opening_weights`), leaving each site out.

Every in-domain question and follow-up of the sites tuned on (`tuned_on: true` in tests/quality/sites.yaml;
the others are never asked) is asked in process over a kept crawl. For each, the answerer's candidate quotes
are recorded with their `OPENING_FEATURES` and two labels: the quote holds a key term (the answer would be
*usable*) and it cites an expected page/section (a hit@1). Each section's best quote by words is a choice. A
listwise logistic ranker (a softmax over a question's choices, fitted to the best-labelled ones) is trained
on four sites and scored on the fifth, against the hand rule (the search's best page first) and the best any
choice could do; then trained on all five, which gives the weights to ship. `--ask` asks each tuned site
with weights trained on the other four and prints the suite's figures.

    python -m bench.quality --keep DIR           # once: crawl and keep
    python -m bench.opening --keep DIR --ask
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import numpy as np

from bench.quality import REDIS_URL, CrawlResult, InProcess, ItemResult, Results, _ask_site, _kb, score
from ragcord import evaluation
from ragcord.answering import extractive
from ragcord.answering.tuning import DEFAULT_TUNING
from ragcord.answering.types import cited_url
from tests.quality.suite import Suite, load_suite

log = logging.getLogger(__name__)

# L2 penalty of the weights: 0.03, 0.1, 0.3 and 1 give the same leave-one-site-out table within one item
# (docs/quality-log.md, session 9); 0.1, the middle, is kept. STEPS of gradient descent: the weights settle.
PENALTY = 0.1
T = TypeVar("T")
STEPS = 500
ASKED = ("hit1", "hit5", "mrr", "key_term", "usable", "followup_hit5", "followup_key_term", "wrongly_refused")


@dataclass
class Candidates:
    """One question's candidate quotes: features and labels, in the answerer's order (best words first)."""

    item: str
    site: str
    features: list[list[float]]
    usable: list[bool]
    hit: list[bool]
    firsts: list[int]  # each section's first quote: the ones the answerer chooses among

    def label(self, index: int) -> int:
        return int(self.usable[index]) + int(self.hit[index])

    def today(self) -> int:
        """The quote the hand rule opens with (`_top_page_first`, from the features it reads)."""
        top, score = extractive.OPENING_FEATURES.index("top_page"), extractive.OPENING_FEATURES.index("score")
        for index, row in enumerate(self.features):
            if row[top]:
                return index if row[score] >= DEFAULT_TUNING.top_page else 0
        return 0


def collect(suite: Suite, keep: Path, *, redis_url: str = REDIS_URL) -> list[Candidates]:
    """Ask the tuned sites' in-domain items in process and record each one's candidate quotes."""
    kept = json.loads((keep / "crawls.json").read_text())
    bases = {c["site"]: c["base_url"] for c in kept["crawls"]}
    tuned = {name for name, site in suite.sites.items() if site.tuned_on}
    current: dict[str, Any] = {}
    recorded: list[Candidates] = []
    original = extractive.opening_features

    def recording(
        question: str,
        windows: list[tuple[float, int, list[Any]]],
        meaning: list[float],
        hits: list[Any],
        how_to: bool,
    ) -> list[list[float]]:
        rows = original(question, windows, meaning, hits, how_to)
        if current:
            expected = [urljoin(bases[current["site"]] + "/", e) for e in current["expected"]]
            usable, hit = [], []
            for _, rank, units in windows:
                shown = f"**{extractive.section_label(hits[rank])}**\n{extractive._body(units)}"
                usable.append(evaluation.has_key_term(current["key_terms"], shown) is True)
                hit.append(evaluation.rank(expected, [cited_url(hits[rank])]) == 1)
            firsts = extractive.section_firsts(windows, hits)
            recorded.append(Candidates(current["id"], current["site"], rows, usable, hit, firsts))
        return rows

    extractive.opening_features = recording  # type: ignore[assignment]
    try:
        with InProcess(keep, redis_url, kept["prefix"]) as deployment:
            width = len(extractive.OPENING_FEATURES)
            deployment.retune(DEFAULT_TUNING.with_values(opening_weights=(0.0,) * width))
            ask_tuned(deployment, suite, tuned, current, f"opening{uuid.uuid4().hex[:8]}")
    finally:
        extractive.opening_features = original  # type: ignore[assignment]
    return recorded


def ask_tuned(
    deployment: InProcess, suite: Suite, tuned: set[str], current: dict[str, Any], run: str
) -> None:
    """Ask the tuned sites' questions and follow-ups, `current` naming the item asked (id, site, expected, key
    terms) for a recorder to read; empty while a conversation's first turn is asked (not an item)."""
    for q in (q for q in suite.questions if q.site in tuned):
        current.clear()
        current.update(id=q.id, site=q.site, expected=q.expected, key_terms=q.key_terms)
        deployment.ask(q.question, _kb(q.site), f"{run}-{q.id}")
    for c in (c for c in suite.conversations if c.site in tuned):
        current.clear()
        deployment.ask(c.first, _kb(c.site), f"{run}-{c.id}")
        current.update(id=c.id, site=c.site, expected=c.expected, key_terms=c.key_terms)
        deployment.ask(c.question, _kb(c.site), f"{run}-{c.id}")
        current.clear()


def train(data: list[Candidates], penalty: float = PENALTY, steps: int = STEPS) -> np.ndarray:
    """Listwise logistic weights over each question's sections (see `listwise`)."""
    lists = [(np.array(c.features)[c.firsts], np.array([c.label(i) for i in c.firsts])) for c in data]
    return listwise(lists, len(extractive.OPENING_FEATURES), penalty, steps)


def listwise(
    lists: list[tuple[np.ndarray, np.ndarray]], width: int, penalty: float = PENALTY, steps: int = STEPS
) -> np.ndarray:
    """Listwise logistic weights: a softmax over each question's choices (features, labels), fitted to put
    its mass on the best-labelled ones (the choice made is the top one); each question weighs the same."""
    lists = [(x, labels) for x, labels in lists if len(set(labels.tolist())) > 1]  # all choices equal
    w = np.zeros(width)
    for _ in range(steps):  # gradient descent on a convex loss
        gradient = penalty * w
        for x, labels in lists:
            scores = x @ w
            p = np.exp(scores - scores.max())
            p /= p.sum()
            target = (labels == labels.max()).astype(float)
            gradient += x.T @ (p - target / target.sum()) / len(lists)
        w -= gradient
    return w


def chosen(c: Candidates, w: np.ndarray) -> int:
    scores = np.array(c.features)[c.firsts] @ w
    return c.firsts[int(np.argmax(scores))]  # the first of equals, as the answerer breaks ties


def tally(data: list[Candidates], pick: Callable[[Candidates], int]) -> dict[str, float]:
    picks = [(c, pick(c)) for c in data]
    n = len(picks) or 1
    return {
        "usable": sum(c.usable[i] for c, i in picks) / n,
        "hit": sum(c.hit[i] for c, i in picks) / n,
    }


def leave_one_site_out(data: list[Candidates], penalty: float = PENALTY) -> dict[str, Any]:
    sites = sorted({c.site for c in data})
    table: dict[str, Any] = {}
    for site in sites:
        w = train([c for c in data if c.site != site], penalty)
        left = [c for c in data if c.site == site]
        table[site] = {
            "items": len(left),
            "today": tally(left, Candidates.today),
            "learned": tally(left, lambda c, w=w: chosen(c, w)),  # type: ignore[misc]
            "best possible": tally(left, lambda c: max(c.firsts, key=c.label)),
        }
    return table


def asked_left_out(
    suite: Suite, keep: Path, data: list[Candidates], *, redis_url: str = REDIS_URL
) -> Results:
    """The suite's figures for each tuned site answered with weights trained on the other tuned sites."""
    kept = json.loads((keep / "crawls.json").read_text())
    crawls = [CrawlResult(**c) for c in kept["crawls"] if c["site"] in suite.sites]
    items: list[ItemResult] = []
    with InProcess(keep, redis_url, kept["prefix"]) as deployment:
        for site in sorted({c.site for c in data}):
            w = train([c for c in data if c.site != site])
            deployment.retune(DEFAULT_TUNING.with_values(opening_weights=tuple(float(v) for v in w)))
            results = Results(settings={}, crawls=crawls)
            results.items = _ask_site(deployment, suite, suite.sites[site], f"opening{uuid.uuid4().hex[:8]}")
            score(results, suite)
            items += results.items
    return Results(settings={"opening": "left out"}, crawls=crawls, items=items)


def render(table: dict[str, Any], w: np.ndarray) -> str:
    ways = ("today", "learned", "best possible")
    columns = {"usable": "first quote usable", "hit": "first quote a hit"}
    lines = left_out_table(table, ways, columns)
    return "\n".join([*lines, *weights_lines(extractive.OPENING_FEATURES, w, "opening_weights")])


def left_out_table(table: dict[str, Any], ways: Sequence[str], columns: dict[str, str]) -> list[str]:
    """The leave-one-site-out table (this script's, bench.rerank's): a row per left-out site and one for all,
    each column one figure (`columns`: its key and label) as each way scores it."""

    def row_line(name: str, items: int, shares: dict[str, dict[str, float]]) -> str:
        cells = [" / ".join(f"{shares[way][key]:.2f}" for way in ways) for key in columns]
        return f"| {name} | {items} | " + " | ".join(cells) + " |"

    lines = [
        "| left-out site | items | "
        + " | ".join(f"{label}: {' / '.join(ways)}" for label in columns.values())
        + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    totals = {way: dict.fromkeys(columns, 0.0) for way in ways}
    n = 0
    for site, row in table.items():
        n += row["items"]
        for way in ways:
            for key in columns:
                totals[way][key] += row[way][key] * row["items"]
        lines.append(row_line(site, row["items"], row))
    lines.append(row_line("all", n, {way: {k: v / (n or 1) for k, v in totals[way].items()} for way in ways}))
    return lines


def weights_lines(names: Sequence[str], w: np.ndarray, field: str) -> list[str]:
    """The weights trained on every tuned site, named, and as the tuning field's value to paste."""
    named = ", ".join(f"{name} {value:.2f}" for name, value in zip(names, w, strict=True))
    return ["", f"Weights trained on all: {named}", f"{field} = ({', '.join(f'{v:.2f}' for v in w)})"]


def recorded(path: Path | None, collected: Callable[[], list[T]], kind: Callable[..., T]) -> list[T]:
    """The recorded candidates: read from `path` when it exists, else `collected()` (and kept at `path`)."""
    if path is not None and path.exists():
        return [kind(**fields) for fields in json.loads(path.read_text())]
    data = collected()
    if path is not None:
        path.write_text(json.dumps([item.__dict__ for item in data]))
    return data


def learning_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options of a script that learns weights from a kept crawl (this one, bench.rerank)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--keep", type=Path, required=True, help="a crawl kept by python -m bench.quality")
    parser.add_argument("--penalty", type=float, default=PENALTY, help="L2 penalty of the weights")
    parser.add_argument("--data", type=Path, help="where the recorded candidates go (json), or are read from")
    parser.add_argument(
        "--ask", action="store_true", help="also ask each tuned site with weights trained on the others"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = learning_parser("python -m bench.opening", __doc__.split("\n")[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    data = recorded(args.data, lambda: collect(load_suite(), args.keep), Candidates)
    print(render(leave_one_site_out(data, args.penalty), train(data, args.penalty)))
    if args.ask:
        results = asked_left_out(load_suite(), args.keep, data)
        print("\nAsked, each tuned site with weights trained on the others:")
        for site in [None, *sorted({c.site for c in data})]:
            figures = results.figures(site)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in figures.items() if v is not None and k in ASKED)
            print(f"- {site or 'all tuned sites'}: {shown}")


if __name__ == "__main__":
    main()
