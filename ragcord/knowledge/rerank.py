"""A learned second stage of the search: a wider pool of candidates ranked by a linear score over simple
features that name nothing of a site (docs/quality-log.md, session 10).

The first stage fuses BM25 and vector candidates and ranks pages by their chunks' evidence (`search.by_page`).
The second reads the best of that pool (and, when `RerankTuning.pages` is set, the best sections of the best
pages searched again on their own) and orders them by `RerankTuning.weights` over `RERANK_FEATURES`. The
weights are learned listwise on the tuned sites by `python -m bench.rerank`; each feature is 0..1. Off by
default (`Settings.search_rerank`): it gained on the tuned sites left out one at a time, not on the sites
never tuned on.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from ragcord.answering.text import STOPWORDS, asks_how_to, stem, terms, tokens
from ragcord.knowledge.stores import StoredChunk

__all__ = ["RERANK_FEATURES", "Candidate", "RerankTuning", "candidate_features", "learned_order"]

_FENCE = re.compile(r"```")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")

RERANK_FEATURES = (
    "fused",  # the fused search score over the pool's best (0: found only by re-reading its page)
    "order",  # 1 / (1 + its place in the first stage's order)
    "cosine",  # cosine to the query over the best candidate's (0: the vector search missed it)
    "keyword",  # BM25 over the best candidate's (0: the keyword search missed it)
    "page_best",  # its page's best fused score over the best page's
    "page_sum",  # its page's evidence (`search.page_scores`) over the best page's
    "top_page",  # it is on the first stage's best page
    "title",  # share of the query's terms in the page title
    "heading",  # share of the query's terms in the section's heading path
    "covered",  # share of the query's terms in the text
    "weighted",  # the same, each term weighed by its rarity among the candidates
    "phrase",  # share of the query's adjacent term pairs found adjacent in heading or text
    "identifier",  # share of the query's terms that are parts of a code identifier (snake_case, camelCase)
    "code_block",  # the text holds a code block
    "how_to_code",  # ... and the question asks how to do something
    "first",  # 1 / (1 + its place on the page): a page's opening explains what the page is for
    "extra",  # found only by re-reading its page
    "length",  # its words (with numbers and names) over 200 (at most 1)
)


@dataclass(frozen=True)
class RerankTuning:
    """How wide the second stage reads, and the weight of each of `RERANK_FEATURES`."""

    # The first stage's best candidates read again: 15, 20, 30 and 40 gave the same leave-one-site-out
    # figures within two questions; 20 costs half of 40's time (docs/quality-log.md, session 10).
    pool: int = 20
    # At most this many of the pool from one page while other pages can fill it (`search.diversify`): the
    # passages are diversified again after the learned order, which needs other pages to choose from.
    pool_per_page: int = 4
    # The best pages searched again on their own, and the sections of each taken (by keyword and by vector
    # search, each): 2 pages of 10 found the key term for no more questions than the pool alone, and cost
    # four store reads. Off.
    pages: int = 0
    page_sections: int = 10
    # Learned by `python -m bench.rerank --keep DIR` on the five tuned sites (docs/quality-log.md, 10).
    # Empty: the first stage's order is kept.
    weights: tuple[float, ...] = (
        0.56,  # fused
        0.17,  # order
        0.72,  # cosine
        0.12,  # keyword
        0.54,  # page_best
        0.59,  # page_sum
        0.37,  # top_page
        0.15,  # title
        0.26,  # heading
        0.09,  # covered
        0.11,  # weighted
        0.09,  # phrase
        0.37,  # identifier
        0.55,  # code_block
        0.14,  # how_to_code
        0.11,  # first
        0.00,  # extra
        0.23,  # length
    )


@dataclass(frozen=True)
class Candidate:
    chunk: StoredChunk
    fused: float  # 0 when only the page's own search found it
    keyword: float | None
    vector: float | None
    order: int  # place in the first stage's order (the pool's size for the extra ones)
    extra: bool = False


def identifier_parts(text: str) -> set[str]:
    """Stemmed parts of the code identifiers a text shows (inline code and code blocks): `lru_cache` gives
    lru and cache, `getElementById` get, element, by and id."""
    code = " ".join(_INLINE_CODE.findall(text) + _CODE_BLOCK.findall(text))
    parts: set[str] = set()
    for name in set(_IDENTIFIER.findall(code)):
        for part in name.split("_"):
            if part.islower() or part.isdigit():
                parts.add(part)
            else:
                parts.update(p.lower() for p in _CAMEL.findall(part))
    return {stem(part) for part in parts - STOPWORDS if part}


@dataclass(frozen=True)
class _Read:
    """What the features read of a chunk's text: its terms, adjacent term pairs and identifiers' parts."""

    terms: frozenset[str]
    pairs: frozenset[tuple[str, str]]
    identifiers: frozenset[str]
    code_block: bool
    words: int


@functools.lru_cache(maxsize=8192)
def _heading(heading: str) -> list[str]:
    return terms(heading)


@functools.lru_cache(maxsize=8192)
def _read(text: str) -> _Read:
    """`text.terms` of a chunk, read once: the same chunks come back for many questions."""
    words = tokens(text.lower())  # `terms`' words, each stemmed once
    stems = {t: stem(t) for t in set(words) - STOPWORDS}
    said = [stems[t] for t in words if t in stems]
    return _Read(
        frozenset(said),
        frozenset(zip(said, said[1:], strict=False)),
        frozenset(identifier_parts(text)) if "`" in text else frozenset(),
        bool(_FENCE.search(text)),
        len(words),
    )


def candidate_features(query: str, candidates: Sequence[Candidate]) -> list[list[float]]:
    """Each candidate's features, in the order of `RERANK_FEATURES` (each 0..1)."""
    asked = terms(query)
    wanted = set(asked)
    pairs = set(zip(asked, asked[1:], strict=False))
    how_to = asks_how_to(query)
    read = [_read(c.chunk.text) for c in candidates]
    headings = [_heading(c.chunk.heading) for c in candidates]
    frequency = {t: sum(1 for r in read if t in r.terms) for t in wanted}
    n = max(len(candidates), 1)
    rarity = {t: math.log(1 + n / max(frequency[t], 1)) for t in wanted}
    all_rarity = sum(rarity.values()) or 1.0
    page_best: dict[str, float] = {}
    page_sum: dict[str, float] = {}
    seen: dict[str, int] = {}
    for c in sorted(candidates, key=lambda c: -c.fused):
        seen[c.chunk.url] = seen.get(c.chunk.url, 0) + 1
        page_best.setdefault(c.chunk.url, c.fused)
        page_sum[c.chunk.url] = page_sum.get(c.chunk.url, 0.0) + c.fused * 0.5 ** (seen[c.chunk.url] - 1)
    top_fused = max((c.fused for c in candidates), default=0.0) or 1.0
    top_cosine = max((c.vector or 0.0 for c in candidates), default=0.0) or 1.0
    top_keyword = max((c.keyword or 0.0 for c in candidates), default=0.0) or 1.0
    top_sum = max(page_sum.values(), default=0.0) or 1.0
    first_page = min(candidates, key=lambda c: c.order).chunk.url if candidates else ""
    titles: dict[str, float] = {}
    rows: list[list[float]] = []
    for c, r, heading in zip(candidates, read, headings, strict=True):
        if c.chunk.title not in titles:
            titles[c.chunk.title] = _share(wanted, set(_heading(c.chunk.title)))
        found_pairs = r.pairs | set(zip(heading, heading[1:], strict=False))
        rows.append(
            [
                c.fused / top_fused,
                1.0 / (1 + c.order),
                max(c.vector or 0.0, 0.0) / top_cosine,
                max(c.keyword or 0.0, 0.0) / top_keyword,
                page_best.get(c.chunk.url, 0.0) / top_fused,
                page_sum.get(c.chunk.url, 0.0) / top_sum,
                float(c.chunk.url == first_page),
                titles[c.chunk.title],
                _share(wanted, set(heading)),
                _share(wanted, r.terms),
                sum(rarity[t] for t in wanted & r.terms) / all_rarity,
                len(pairs & found_pairs) / len(pairs) if pairs else 0.0,
                _share(wanted, r.identifiers),
                float(r.code_block),
                float(how_to and r.code_block),
                1.0 / (1 + c.chunk.chunk_index),
                float(c.extra),
                min(r.words / 200, 1.0),
            ]
        )
    return rows


def _share(wanted: AbstractSet[str], found: AbstractSet[str]) -> float:
    return len(wanted & found) / len(wanted) if wanted else 0.0


def learned_order(features: list[list[float]], weights: Sequence[float]) -> list[int]:
    """Candidate indexes, best first by their weighted features; ties keep the first stage's order."""
    scores = [sum(w * f for w, f in zip(weights, row, strict=True)) for row in features]
    return sorted(range(len(features)), key=lambda i: (-scores[i], i))
