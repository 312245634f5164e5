"""Hybrid retrieval: BM25 and vector candidates fused, diversified and expanded with neighbours.

Fusion follows Weaviate's two hybrid modes so both stores rank alike:
- "relative" (relativeScoreFusion): each list's scores min-max normalised to 0..1, then
  alpha * vector + (1 - alpha) * keyword;
- "rrf" (rankedFusion): alpha / (60 + vector rank) + (1 - alpha) / (60 + keyword rank), ranks from 0.
alpha = 1 is vector only, 0 keyword only; with the `none` embedder search is keyword only.

Rankings are deterministic: every list is ordered by score, then chunk id, and a candidate pool is never cut
inside a tie (the stores break ties arbitrarily). Pages are then ranked by their chunks' evidence together
(`page_scores`): a page several of whose chunks match beats a page with one stray hit. A query's
abbreviations are spelled out first (`abbreviations`): manuals write the words users abbreviate.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Literal

from ragcord.knowledge import rerank
from ragcord.knowledge.abbreviations import spelled_out
from ragcord.knowledge.embedders import Embedder
from ragcord.knowledge.stores import ScoredChunk, Store, StoredChunk

Fusion = Literal["relative", "rrf"]
RRF_K = 60
# Asked of a store beyond the pool, so a tie at the pool's edge is seen whole (see `stable`).
TIE_MARGIN = 10


@dataclass(frozen=True)
class Hit:
    chunk: StoredChunk
    score: float  # fused; comparable within one search only
    keyword_score: float | None = None  # BM25, when the keyword search found it
    vector_score: float | None = None  # cosine similarity, when the vector search found it
    passage: str = ""  # the chunk with its neighbours, in page order

    @property
    def url(self) -> str:
        return self.chunk.url

    @property
    def title(self) -> str:
        return self.chunk.title


def stable(results: list[ScoredChunk], k: int, *, fetched: int | None = None) -> list[ScoredChunk]:
    """The best `k` (more when the k-th is tied), ties by chunk id, whatever order the store returned.

    `fetched` is how many the store was asked for: when it returned that many, the last score's tie may
    have been cut by the store, so that tie is left out (unless nothing else is left).
    """
    ranked = sorted(results, key=lambda r: (-r.score, r.chunk.id))
    if fetched is not None and len(ranked) >= fetched and ranked:
        complete = [r for r in ranked if r.score != ranked[-1].score]
        ranked = complete or ranked
    if len(ranked) <= k:
        return ranked
    cut = ranked[k - 1].score if k > 0 else None
    return [r for i, r in enumerate(ranked) if i < k or r.score == cut]


def page_scores(ranked: list[tuple[StoredChunk, float]], *, decay: float) -> dict[str, float]:
    """Each page's evidence: its best chunk's score plus `decay`-weighted shares of its next ones."""
    scores: dict[str, float] = {}
    seen: dict[str, int] = {}
    for chunk, score in ranked:
        n = seen.get(chunk.url, 0)
        seen[chunk.url] = n + 1
        scores[chunk.url] = scores.get(chunk.url, 0.0) + score * decay**n
    return scores


def by_page(ranked: list[tuple[StoredChunk, float]], *, decay: float) -> list[tuple[StoredChunk, float]]:
    """Each page's best chunk ranked by the page's evidence (`page_scores`), its other chunks by their own."""
    if decay <= 0:
        return ranked
    pages = page_scores(ranked, decay=decay)
    best: set[str] = set()
    keyed = []
    for chunk, score in ranked:
        key = score if chunk.url in best else pages[chunk.url]
        best.add(chunk.url)
        keyed.append((key, chunk, score))
    return [(chunk, score) for _, chunk, score in sorted(keyed, key=lambda x: (-x[0], x[1].id))]


def _normalised(results: list[ScoredChunk]) -> dict[str, float]:
    if not results:
        return {}
    scores = [r.score for r in results]
    low, high = min(scores), max(scores)
    span = high - low
    return {r.chunk.id: (r.score - low) / span if span > 0 else 1.0 for r in results}


def fuse(
    keyword: list[ScoredChunk], vector: list[ScoredChunk], *, alpha: float, fusion: Fusion = "relative"
) -> list[tuple[StoredChunk, float]]:
    """Fused ranking of two best-first candidate lists (pure; the stores' semantics)."""
    chunks = {r.chunk.id: r.chunk for r in keyword + vector}
    if fusion == "rrf":
        kw = {r.chunk.id: 1.0 / (RRF_K + rank) for rank, r in enumerate(keyword)}
        vec = {r.chunk.id: 1.0 / (RRF_K + rank) for rank, r in enumerate(vector)}
    else:
        kw, vec = _normalised(keyword), _normalised(vector)
    fused = {cid: alpha * vec.get(cid, 0.0) + (1 - alpha) * kw.get(cid, 0.0) for cid in chunks}
    return sorted(((chunks[cid], score) for cid, score in fused.items()), key=lambda x: (-x[1], x[0].id))


def diversify(
    ranked: list[tuple[StoredChunk, float]], k: int, per_source: int
) -> list[tuple[StoredChunk, float]]:
    """Top k with at most `per_source` chunks of one page while other pages can fill the slots, so one page
    cannot crowd the others out; slots no other page fills (a manual on one page, a site of few pages) go
    to the capped pages' next chunks, best first."""
    taken: list[tuple[StoredChunk, float]] = []
    skipped: list[tuple[StoredChunk, float]] = []
    per_url: dict[str, int] = {}
    for chunk, score in ranked:
        if len(taken) == k:
            break
        if per_url.get(chunk.url, 0) >= per_source:
            skipped.append((chunk, score))
            continue
        per_url[chunk.url] = per_url.get(chunk.url, 0) + 1
        taken.append((chunk, score))
    if len(taken) < k and skipped:
        taken += skipped[: k - len(taken)]
        taken.sort(key=lambda x: (-x[1], x[0].id))
    return taken


@dataclass(frozen=True)
class _Candidates:
    keyword: list[ScoredChunk]
    vector: list[ScoredChunk]
    query_vector: list[float] | None = None


class Retriever:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        *,
        alpha: float = 0.5,
        fusion: Fusion = "relative",
        candidates: int = 30,
        per_source: int = 2,
        neighbours: int = 1,
        page_decay: float = 0.5,
        reread: int = 0,
        second_stage: rerank.RerankTuning | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        # Where the keyword search runs while this thread embeds the query and searches by vector (it needs
        # no vector; SQLite and the model both let go of the GIL): None, one after the other.
        self.executor = executor
        self.alpha = alpha
        self.fusion: Fusion = fusion
        self.candidates = candidates
        self.per_source = per_source
        self.neighbours = neighbours
        self.page_decay = page_decay
        # Second stage: the best page searched again on its own, its best `reread` sections not already
        # found put right after its first hit (0: off; docs/quality-log.md, session 7).
        self.reread = reread
        # A learned order of a wider pool (`rerank`); None or no weights: the first stage's order.
        self.second_stage = second_stage

    def search(
        self,
        kb: str,
        query: str,
        k: int = 5,
        *,
        source: str | None = None,
        alpha: float | None = None,
        expand: bool = True,
        learned: bool = True,
    ) -> list[Hit]:
        """`learned`: the second stage may re-order (off for a follow-up's query, which holds the earlier
        question's words too: the weights were learned on questions asked on their own)."""
        alpha = self.alpha if alpha is None else alpha
        query = spelled_out(query)  # "repl" also searches "interactive interpreter"
        if self.embedder.dim is None:
            alpha = 0.0
        pool = max(self.candidates, k * 4)
        candidates = self._candidates(kb, query, pool, alpha, source)
        fused = fuse(candidates.keyword, candidates.vector, alpha=alpha, fusion=self.fusion)
        ranked = by_page(fused, decay=self.page_decay)
        if learned and self.second_stage is not None and self.second_stage.weights and source is None:
            ranked, candidates = self._reranked(kb, query, ranked, candidates, self.second_stage)
        hits = self._hits(kb, ranked, k, candidates, expand)
        if self.reread > 0 and hits and source is None:
            hits = self._reread_top_page(kb, query, hits, alpha, expand)
        return hits

    def _reread_top_page(self, kb: str, query: str, hits: list[Hit], alpha: float, expand: bool) -> list[Hit]:
        """The best page's other sections against the question, after its first hit: the first search
        ranked chunks across the site, so the page's best answer may have missed the cut."""
        top = hits[0]
        page = self._candidates(kb, query, self.candidates, alpha, top.chunk.url)
        have = {h.chunk.id for h in hits}
        ranked = fuse(page.keyword, page.vector, alpha=alpha, fusion=self.fusion)
        extra = [(chunk, top.score) for chunk, _ in ranked if chunk.id not in have][: self.reread]
        if not extra:
            return hits
        more = self._hits(kb, extra, len(extra), page, expand)
        return [top, *more, *hits[1:]]

    def _reranked(
        self,
        kb: str,
        query: str,
        ranked: list[tuple[StoredChunk, float]],
        candidates: _Candidates,
        tuning: rerank.RerankTuning,
    ) -> tuple[list[tuple[StoredChunk, float]], _Candidates]:
        """The first stage's best `tuning.pool` (diversified) and the best sections of its best `tuning.pages`
        pages in the learned order, then the rest in the first stage's order; scores are the first stage's,
        handed out by place, so later steps read them alike."""
        pool = diversify(ranked, tuning.pool, tuning.pool_per_page)
        pooled = {chunk.id for chunk, _ in pool}
        rest = [(chunk, score) for chunk, score in ranked if chunk.id not in pooled]
        pages = list(dict.fromkeys(chunk.url for chunk, _ in pool))[: tuning.pages]
        keyword, vector = list(candidates.keyword), list(candidates.vector)
        for url in pages:  # the page's own best sections, which the site-wide cut may have missed
            if candidates.query_vector is not None:
                vector += self.store.vector_search(
                    kb, candidates.query_vector, tuning.page_sections, source=url
                )
            keyword += self._keyword_candidates(kb, query, tuning.page_sections, url)
        kw_scores = {r.chunk.id: r.score for r in keyword}
        vec_scores = {r.chunk.id: r.score for r in vector}
        listed = [
            rerank.Candidate(chunk, score, kw_scores.get(chunk.id), vec_scores.get(chunk.id), place)
            for place, (chunk, score) in enumerate(pool)
        ]
        have = {chunk.id for chunk, _ in pool}
        for found in keyword[len(candidates.keyword) :] + vector[len(candidates.vector) :]:
            if found.chunk.id not in have:
                have.add(found.chunk.id)
                chunk = found.chunk
                listed.append(
                    rerank.Candidate(
                        chunk, 0.0, kw_scores.get(chunk.id), vec_scores.get(chunk.id), len(pool), extra=True
                    )
                )
        features = rerank.candidate_features(query, listed)
        order = rerank.learned_order(features, tuning.weights)
        chunks = [listed[i].chunk for i in order] + [chunk for chunk, _ in rest]
        scores = sorted((score for _, score in ranked), reverse=True)
        scores += [0.0] * (len(chunks) - len(scores))  # the extra sections
        return list(zip(chunks, scores, strict=True)), _Candidates(keyword, vector, candidates.query_vector)

    def _candidates(self, kb: str, query: str, pool: int, alpha: float, source: str | None) -> _Candidates:
        beside = None
        if 0 < alpha < 1 and self.executor is not None:
            beside = self.executor.submit(
                contextvars.copy_context().run, self._keyword_candidates, kb, query, pool, source
            )
        vector: list[ScoredChunk] = []
        query_vector = None
        if alpha > 0:
            query_vector = self.embedder.embed([query])[0]
            fetched = self.store.vector_search(kb, query_vector, pool + TIE_MARGIN, source=source)
            vector = stable(fetched, pool, fetched=pool + TIE_MARGIN)
        keyword: list[ScoredChunk] = []
        if beside is not None:
            keyword = beside.result()
        elif alpha < 1:
            keyword = self._keyword_candidates(kb, query, pool, source)
        return _Candidates(keyword, vector, query_vector)

    def _keyword_candidates(self, kb: str, query: str, pool: int, source: str | None) -> list[ScoredChunk]:
        fetched = self.store.keyword_search(kb, query, pool + TIE_MARGIN, source=source)
        return stable(fetched, pool, fetched=pool + TIE_MARGIN)

    def _hits(
        self,
        kb: str,
        fused: list[tuple[StoredChunk, float]],
        k: int,
        candidates: _Candidates,
        expand: bool,
    ) -> list[Hit]:
        """The top k, diversified, each with its keyword and vector score among the candidates."""
        kw_scores = {r.chunk.id: r.score for r in candidates.keyword}
        vec_scores = {r.chunk.id: r.score for r in candidates.vector}
        taken = diversify(fused, k, self.per_source)
        passages = self._passages(kb, [chunk for chunk, _ in taken]) if expand else {}
        return [
            Hit(
                chunk=chunk,
                score=score,
                keyword_score=kw_scores.get(chunk.id),
                vector_score=vec_scores.get(chunk.id),
                passage=passages.get(chunk.id, chunk.text),
            )
            for chunk, score in taken
        ]

    def _around(self, chunk: StoredChunk) -> list[int]:
        return [
            chunk.chunk_index + d
            for d in range(-self.neighbours, self.neighbours + 1)
            if d and chunk.chunk_index + d >= 0
        ]

    def _passages(self, kb: str, chunks: list[StoredChunk]) -> dict[str, str]:
        """Each chunk with its neighbours in its section, in page order (chunk id -> text); one store read."""
        if self.neighbours <= 0 or not chunks:
            return {}
        positions: dict[str, set[int]] = {}
        for chunk in chunks:
            positions.setdefault(chunk.url, set()).update(self._around(chunk))
        found = {(c.url, c.chunk_index): c for c in self.store.chunks_at(kb, positions)}
        passages = {}
        for chunk in chunks:
            nearby = [
                c
                for i in self._around(chunk)
                if (c := found.get((chunk.url, i))) is not None and c.heading == chunk.heading
            ]  # stay within the section, so the passage reads whole
            parts = sorted([*nearby, chunk], key=lambda c: c.chunk_index)
            passages[chunk.id] = "\n\n".join(c.text for c in parts)
        return passages
