"""Main-content extraction on the open web: ragcord and trafilatura side by side on trafilatura's own data.

The corpus is trafilatura's (Apache-2.0): `tests/evaldata.json` with the pages in `tests/eval/` and
`tests/cache/` (990 annotated pages: news, blogs, institutional and product sites; 149 MB, not in this
repository). Get it with `git clone https://github.com/adbar/trafilatura` and point `--corpus` (or
RAGCORD_TRAFILATURA_EVAL) at its `tests/` folder.

Scoring reproduces trafilatura's `tests/eval_common.py` (`norm`, `count_item`, `ConfusionMatrix`): per page,
each "with" segment found in the output is a true positive, each "without" segment found a false positive,
after collapsing whitespace runs to one space, by plain substring search; precision, recall and F1 over the
summed counts; a crash counts as a full miss. ragcord is scored on the text it indexes (`ExtractedPage.text`
of `workers.extraction.extract_html`), trafilatura 2.3.1 with its evaluation's standard options
(`include_comments=False, include_tables=True, include_formatting=False`), in the same run, page by page.

    python -m bench.extraction [--corpus DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import trafilatura

from workers.extraction import extract_html

log = logging.getLogger(__name__)

DEFAULT_CORPUS = Path("/work/data/trafilatura-eval/tests")
DOCS = Path(__file__).resolve().parents[1] / "docs"
HOW_TO_GET = (
    "The corpus is trafilatura's evaluation set (Apache-2.0, 149 MB, not committed): "
    "`git clone https://github.com/adbar/trafilatura` and run "
    "`python -m bench.extraction --corpus trafilatura/tests` "
    "(or set RAGCORD_TRAFILATURA_EVAL to that folder)."
)
# trafilatura's evaluation runs it with these options (tests/eval_common.py, EXTRACT_OPTS)
TRAFILATURA_OPTIONS: dict[str, bool] = {
    "include_comments": False,
    "include_tables": True,
    "include_formatting": False,
}


def corpus_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """The corpus folder: the argument, else RAGCORD_TRAFILATURA_EVAL, else the machines' copy."""
    return Path(given or os.environ.get("RAGCORD_TRAFILATURA_EVAL") or DEFAULT_CORPUS)


# -- trafilatura's scoring (tests/eval_common.py), reproduced ------------------------------------------


def norm(text: str) -> str:
    """Whitespace-normalised, as eval_common.norm."""
    return re.sub(r"\s+", " ", text).strip()


def count_item(item: dict[str, Any], result: str | None) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of one page by whitespace-normalised substring matching, as eval_common.count_item."""
    if isinstance(result, str):
        resn = norm(result)
        tp = sum(1 for w in item["with"] if norm(w) in resn)
        fp = sum(1 for w in item["without"] if norm(w) in resn)
    else:
        tp = fp = 0
    return tp, fp, len(item["with"]) - tp, len(item["without"]) - fp


@dataclass
class Score:
    """Summed counts of one extractor, with its time; the scores as eval_common.ConfusionMatrix."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    errors: int = 0
    pages: int = 0
    first_error: str = ""
    per_page: list[float] = field(default_factory=list)  # F1 of each page, for the plot

    def add(self, counts: tuple[int, int, int, int]) -> None:
        tp, fp, fn, tn = counts
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.tn += tn
        denom = 2 * tp + fp + fn
        self.per_page.append(2 * tp / denom if denom else 0.0)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    @property
    def ms(self) -> float:
        return 1000 * self.seconds / self.pages if self.pages else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.pages if self.pages else 0.0


# -- the corpus ----------------------------------------------------------------------------------------


def load_corpus(folder: Path) -> dict[str, dict[str, Any]]:
    """evaldata.json's annotations, each with its page's bytes under "html" (cache/ first, as resolve())."""
    with (folder / "evaldata.json").open(encoding="utf-8") as f:
        data: dict[str, dict[str, Any]] = json.load(f)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{folder / 'evaldata.json'}: expected a non-empty object of annotations")
    for url, item in data.items():
        for sub in ("cache", "eval"):
            path = folder / sub / item["file"]
            if path.is_file():
                item["html"] = path.read_bytes()
                break
        else:
            raise ValueError(f"{url}: page not found under {folder}/cache or /eval: {item['file']}")
    return data


# -- the extractors ------------------------------------------------------------------------------------


def ragcord_text(html: bytes, url: str) -> str:
    """What ragcord indexes of the page: its sections as text, headings as lines."""
    return extract_html(html, url).text


def trafilatura_text(html: bytes, url: str) -> str | None:
    """trafilatura as its evaluation runs it (bytes in, standard options, fallbacks on)."""
    return trafilatura.extract(html, **TRAFILATURA_OPTIONS)  # type: ignore[arg-type]


EXTRACTORS: dict[str, Callable[[bytes, str], str | None]] = {
    "ragcord": ragcord_text,
    "trafilatura": trafilatura_text,
}


def score(data: dict[str, dict[str, Any]], limit: int | None = None) -> dict[str, Score]:
    """Every extractor on every page, interleaved page by page so machine load hits both alike."""
    scores = {name: Score() for name in EXTRACTORS}
    for fn in EXTRACTORS.values():  # lazy imports and caches before timing starts
        fn(b"<html><body><p>warm up</p></body></html>", "http://warm.up/")
    urls = sorted(data)[:limit] if limit else sorted(data)
    for i, url in enumerate(urls, 1):
        item = data[url]
        for name, fn in EXTRACTORS.items():
            result: str | None
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                result = fn(item["html"], url)
            except Exception as exc:  # noqa: BLE001  # a crash counts as a full miss, as in eval_common.run_and_count
                result = None
                scores[name].errors += 1
                scores[name].first_error = scores[name].first_error or f"{item['file']}: {exc!r}"
            scores[name].seconds += time.perf_counter() - wall
            scores[name].cpu_seconds += time.process_time() - cpu
            scores[name].pages += 1
            scores[name].add(count_item(item, result))
        if i % 200 == 0:
            log.info("%d/%d pages", i, len(urls))
    return scores


# -- the report ----------------------------------------------------------------------------------------


def plot(scores: dict[str, Score], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = list(scores)
    width = 0.8 / len(names)
    figures = ("precision", "recall", "f1")
    for i, name in enumerate(names):
        values = [getattr(scores[name], f) for f in figures]
        left.bar([x + i * width for x in range(len(figures))], values, width, label=name)
    ticks = [x + width * (len(names) - 1) / 2 for x in range(len(figures))]
    left.set_xticks(ticks, ["precision", "recall", "F"])
    left.set_ylim(0.6, 1.0)
    left.set_title("trafilatura's evaluation set, same run")
    left.legend(loc="lower right")
    for name in names:
        right.plot(sorted(scores[name].per_page), label=name)
    right.set_xlabel("pages, by their F1")
    right.set_ylabel("F1 of the page")
    right.set_title("per page")
    right.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(scores: dict[str, Score], corpus: Path, pages: int) -> tuple[str, str]:
    rag, traf = scores["ragcord"], scores["trafilatura"]
    rows = "\n".join(
        f"| {name} | {s.precision:.3f} | {s.recall:.3f} | **{s.f1:.3f}** | {s.ms:.1f} | {s.cpu_ms:.1f} "
        f"| {s.errors} |"
        for name, s in scores.items()
    )
    ratio = rag.cpu_ms / traf.cpu_ms if traf.cpu_ms else 0.0
    today, release = datetime.date.today().isoformat(), version("trafilatura")
    errors = "".join(f"\nFirst error of {n}: `{s.first_error}`." for n, s in scores.items() if s.first_error)
    markdown = f"""## Main-content extraction on the open web (trafilatura's evaluation set)

{today}, `python -m bench.extraction --corpus {corpus}`; trafilatura {release}.
{pages} annotated web pages (news, blogs, institutional and product sites, many languages) from
trafilatura's repository (`tests/evaldata.json`, pages in `tests/eval/` and `tests/cache/`,
Apache-2.0), scored exactly as its `tests/eval_common.py` scores: a page's "with" segments found in
the output are true positives, its "without" segments (navigation, bylines, related links, footers,
comments) found are false positives, by substring search after collapsing whitespace. ragcord is
scored on the text it indexes (`ExtractedPage.text`: sections with their headings), trafilatura with
its evaluation's standard options (`include_comments=False, include_tables=True`), page by page in
the same run.

| extractor | precision | recall | F | ms a page | CPU ms a page | errors |
|---|---|---|---|---|---|---|
{rows}

ragcord / trafilatura: F {rag.f1 - traf.f1:+.3f}, CPU time x{ratio:.2f} (times vary with the
machine's load; the CPU column is the steadier one). ragcord reads a page no documentation generator
made through trafilatura's choice of blocks and renders them itself (sections with anchors, whole
code blocks, lists, tables), so its time is trafilatura's plus its own walk; a documentation
generator's page (Sphinx, Doxygen, DocBook, texinfo, MkDocs, ...) is read by ragcord's own extractor
alone.{errors}

![precision, recall and F on trafilatura's evaluation set](bench/extraction.png)
"""
    line = (
        f"extraction: pages={pages} ragcord_f={rag.f1:.3f} ragcord_p={rag.precision:.3f} "
        f"ragcord_r={rag.recall:.3f} trafilatura_f={traf.f1:.3f} ragcord_ms={rag.ms:.1f} "
        f"trafilatura_ms={traf.ms:.1f} cpu_ratio={ratio:.2f}"
    )
    return markdown, line


def run(
    plots: Path, corpus: str | os.PathLike[str] | None = None, limit: int | None = None
) -> tuple[str, str]:
    """The benchmark: a section for docs/benchmarks.md and one comparable line."""
    folder = corpus_dir(corpus)
    if not (folder / "evaldata.json").is_file():
        markdown = (
            "## Main-content extraction on the open web (trafilatura's evaluation set)\n\n"
            f"Not run: no corpus at `{folder}`. {HOW_TO_GET}\n"
        )
        return markdown, f"extraction: skipped no_corpus={folder}"
    data = load_corpus(folder)
    scores = score(data, limit)
    plots.mkdir(parents=True, exist_ok=True)
    plot(scores, plots / "extraction.png")
    return report(scores, folder, min(limit or len(data), len(data)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.extraction", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", help="trafilatura's tests/ folder (default: RAGCORD_TRAFILATURA_EVAL)")
    parser.add_argument("--limit", type=int, help="only the first N pages (by URL)")
    parser.add_argument("--plots", type=Path, default=DOCS / "bench", help="where the PNG goes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    markdown, line = run(args.plots, args.corpus, args.limit)
    print(markdown)
    print(line)


if __name__ == "__main__":
    main()
