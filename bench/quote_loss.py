"""Where the key term is lost between the passages the extractive answerer reads and its answer.

Every in-domain question and follow-up of the sites tuned on (`tuned_on: true`; the others are never asked
unless `--all-sites`) is asked in process over a kept crawl. For each whose considered passages hold a key
term but whose answer does not, the loss is put in one category:

- `not quoted`: no passage holding a key term is quoted (the best such passage's search rank is kept);
- `cut`: a passage holding it is quoted, but the unit with the term is left out of the quote;
- `code dropped`: ... and that unit is a code block (too long for `max_code_lines`, or a quote of code alone);
- `no unit`: the term is in the passage's text but in no quotable unit (a heading, a cut sentence, a label).

    python -m bench.quote_loss --keep DIR [--all-sites]
    python -m bench.quote_loss --keep DIR --loso     # choose the quoting settings leaving each tuned site out

`--loso` chooses each setting of `GRID` on four tuned sites by `objective_with_key_term` (the suite's
objective and the share of answers holding a key term), freezes it and asks the fifth.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.quality import REDIS_URL, InProcess, _kb, leave_one_site_out, objective_with_key_term, render_loso
from ragcord import evaluation
from ragcord.answering import extractive
from ragcord.answering.text import asks_how_to, passage_units, terms
from tests.quality.suite import Suite, load_suite

log = logging.getLogger(__name__)

# What decides whether a passage's code block can be quoted (AnswerTuning; 0: today's rule).
GRID: dict[str, tuple[float, ...]] = {"lone_code_lines": (0, 10, 30), "follow_code_lines": (0, 5, 10)}


def _has(terms: list[str], text: str) -> bool:
    return evaluation.has_key_term(terms, text) is True


def _why(
    answerer: extractive.ExtractiveAnswerer, question: str, units: list[Any], with_term: list[Any]
) -> str:
    """Why the unit with the key term made no quote: it shares no term with the question, its quote is
    empty (a code block alone, too few words), or its quote scored too low / found no room."""
    asked = set(terms(question))
    how_to = asks_how_to(question)
    reasons = []
    for unit in with_term:
        if not set(terms(unit.text)) & asked:
            reasons.append("no question term")
        elif not answerer._window(units, units.index(unit), how_to):
            reasons.append(f"empty quote ({unit.kind})")
        else:
            reasons.append("scored low")
    for reason in ("scored low", "empty quote (code)", "empty quote (table)", "empty quote (item)"):
        if reason in reasons:
            return reason
    return reasons[0] if reasons else ""


def classify(
    answerer: extractive.ExtractiveAnswerer,
    key_terms: list[str],
    hits: list[Any],
    quotes: list[Any],
    text: str,
    question: str = "",
) -> dict[str, Any]:
    """The category of one answer's loss (or `kept` / `not in passages`), with what explains it."""
    considered = hits[: answerer.considered]
    holding = [r for r, h in enumerate(considered) if _has(key_terms, h.passage or h.chunk.text)]
    if _has(key_terms, text):
        return {"category": "kept" if holding else "kept (heading or other)"}
    if not holding:
        return {"category": "not in passages"}
    quoted = {q.rank for q in quotes}
    for rank in holding:
        if rank not in quoted:
            continue
        units = passage_units(considered[rank].passage or considered[rank].chunk.text)
        with_term = [u for u in units if _has(key_terms, u.text)]
        if not with_term:
            continue
        if all(u.kind == "code" for u in with_term):
            lines = max(u.text.count("\n") for u in with_term)
            why = _why(answerer, question, units, with_term)
            return {"category": "code dropped", "rank": rank, "lines": lines, "why": why}
        kinds = sorted({u.kind for u in with_term})
        return {"category": "cut", "rank": rank, "kinds": kinds, "quotes": len(quotes)}
    if not any(quoted & set(holding)):
        best = holding[0]
        units = passage_units(considered[best].passage or considered[best].chunk.text)
        with_term = [u for u in units if _has(key_terms, u.text)]
        if not with_term:
            return {"category": "no unit", "rank": best}
        return {
            "category": "not quoted",
            "rank": best,
            "kinds": sorted({u.kind for u in with_term}),
            "quotes": len(quotes),
            "quoted_ranks": sorted(quoted),
            "why": _why(answerer, question, units, with_term),
        }
    return {"category": "no unit", "rank": holding[0]}


def collect(
    suite: Suite, keep: Path, *, all_sites: bool = False, redis_url: str = REDIS_URL
) -> list[dict[str, Any]]:
    kept = json.loads((keep / "crawls.json").read_text())
    sites = {n for n, s in suite.sites.items() if s.tuned_on or all_sites}
    seen: dict[str, Any] = {}
    original = extractive.ExtractiveAnswerer._quotes

    def recording(self: Any, question: str, hits: list[Any], earlier: str = "") -> list[Any]:
        quotes = original(self, question, hits, earlier)
        seen.update(hits=hits, quotes=quotes, answerer=self)
        return quotes

    extractive.ExtractiveAnswerer._quotes = recording  # type: ignore[method-assign]
    rows: list[dict[str, Any]] = []
    try:
        with InProcess(keep, redis_url, kept["prefix"]) as deployment:
            run = f"quoteloss{uuid.uuid4().hex[:8]}"

            def one(item_id: str, site: str, question: str, key_terms: list[str], kind: str) -> None:
                seen.clear()
                answer, _ = deployment.ask(question, _kb(site), f"{run}-{item_id}")
                row: dict[str, Any] = {"id": item_id, "site": site, "kind": kind}
                if not answer.found or "hits" not in seen:
                    row["category"] = "refused"
                else:
                    row |= classify(
                        seen["answerer"], key_terms, seen["hits"], seen["quotes"], answer.text, question
                    )
                rows.append(row)

            for q in (q for q in suite.questions if q.site in sites):
                one(q.id, q.site, q.question, q.key_terms, "question")
            for c in (c for c in suite.conversations if c.site in sites):
                deployment.ask(c.first, _kb(c.site), f"{run}-{c.id}")
                one(c.id, c.site, c.question, c.key_terms, "followup")
    finally:
        extractive.ExtractiveAnswerer._quotes = original  # type: ignore[method-assign]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quote_loss", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, required=True, help="a crawl kept by python -m bench.quality")
    parser.add_argument("--all-sites", action="store_true", help="the never-tuned sites too (figures only)")
    parser.add_argument("--out", type=Path, help="the rows (or the --loso table), as json")
    parser.add_argument(
        "--loso", action="store_true", help="choose GRID's settings leaving each tuned site out"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.loso else logging.WARNING, stream=sys.stderr)
    if args.loso:
        data = leave_one_site_out(load_suite(), args.keep, grid=GRID, objective=objective_with_key_term)
        if args.out:
            args.out.write_text(json.dumps(data, indent=1))
        print(render_loso(data))
        print("objective per value and site:", json.dumps(data["objective_per_value"]))
        return
    rows = collect(load_suite(), args.keep, all_sites=args.all_sites)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print(f"{len(rows)} items")
    for kind in ("question", "followup", None):
        counts = Counter(r["category"] for r in rows if kind is None or r["kind"] == kind)
        print(kind or "all", dict(counts))
    ranks = Counter(r.get("rank") for r in rows if r["category"] == "not quoted")
    print("not quoted, rank of the best passage holding a key term:", dict(sorted(ranks.items())))
    whys = Counter(f"{r['category']}: {r['why']}" for r in rows if r.get("why"))
    print("why the unit with the key term made no quote:", dict(whys))


if __name__ == "__main__":
    main()
