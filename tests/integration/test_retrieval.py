"""Retrieval quality on the fixture site: 40 questions, each with the page that answers it."""

from __future__ import annotations

import pytest

from ragcord.knowledge.embedders import NoEmbedder
from ragcord.knowledge.search import Retriever, diversify, fuse
from ragcord.knowledge.stores import ScoredChunk, StoredChunk
from tests.integration.conftest import QUESTIONS, canonical


def evaluate(retriever: Retriever, questions: list[dict]) -> dict[str, float]:
    ranks = []
    for item in questions:
        urls: list[str] = []
        for hit in retriever.search("docs", item["question"], k=5, expand=False):
            if canonical(hit.url) not in urls:
                urls.append(canonical(hit.url))
        ranks.append(urls.index(item["page"]) + 1 if item["page"] in urls else None)
    n = len(ranks)
    return {
        "hit@1": sum(r == 1 for r in ranks) / n,
        "hit@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
    }


def report(name: str, metrics: dict[str, float]) -> None:
    print(
        f"\n{name}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        + f" ({len(QUESTIONS)} questions)"
    )


def test_hybrid_retrieval_with_the_local_embedder_finds_the_right_page(indexed):
    metrics = evaluate(Retriever(indexed.store, indexed.embedder), QUESTIONS)
    report("hybrid (BM25 + MiniLM, relative score fusion, alpha 0.5: the default)", metrics)
    assert metrics["hit@5"] >= 0.85


@pytest.mark.parametrize(
    ("name", "alpha", "fusion"), [("vector only", 1.0, "rrf"), ("rrf, alpha 0.5", 0.5, "rrf")]
)
def test_other_weightings_are_measured(indexed, name, alpha, fusion):
    metrics = evaluate(Retriever(indexed.store, indexed.embedder, alpha=alpha, fusion=fusion), QUESTIONS)
    report(name, metrics)
    assert metrics["hit@5"] >= 0.7


def test_keyword_only_search_works_without_an_embedder(indexed):
    metrics = evaluate(Retriever(indexed.store, NoEmbedder()), QUESTIONS)
    report("keyword only (BM25)", metrics)
    assert metrics["hit@5"] >= 0.7


def test_one_page_cannot_fill_every_slot_and_passages_include_neighbours(indexed):
    retriever = Retriever(indexed.store, indexed.embedder, per_source=2)
    hits = retriever.search("docs", "retries backoff dead letters", k=6)
    per_url: dict[str, int] = {}
    for hit in hits:
        per_url[hit.url] = per_url.get(hit.url, 0) + 1
    assert max(per_url.values()) <= 2
    assert all(hit.chunk.text in hit.passage for hit in hits)


def test_search_can_be_limited_to_one_source(indexed):
    retriever = Retriever(indexed.store, indexed.embedder)
    source = next(s.url for s in indexed.store.list_sources("docs") if s.url.endswith("/retries.html"))
    hits = retriever.search("docs", "how do I configure logging", k=5, source=source)
    assert hits and {h.url for h in hits} == {source}


def test_an_unknown_knowledge_base_finds_nothing(indexed):
    assert Retriever(indexed.store, indexed.embedder).search("nothing-here", "anything") == []


# -- the fusion itself (pure) -------------------------------------------------------------------------


def chunk(cid: str, url: str = "u") -> StoredChunk:
    return StoredChunk(
        id=cid, url=url, title="", heading="", chunk_index=0, text=cid, content_hash="", indexed_at=0.0
    )


def test_relative_score_fusion_weights_normalised_scores():
    keyword = [ScoredChunk(chunk("a"), 10.0), ScoredChunk(chunk("b"), 5.0), ScoredChunk(chunk("c"), 0.0)]
    vector = [ScoredChunk(chunk("c"), 0.9), ScoredChunk(chunk("b"), 0.5)]
    fused = dict((c.id, s) for c, s in fuse(keyword, vector, alpha=0.75, fusion="relative"))
    assert fused == pytest.approx({"a": 0.25, "b": 0.125, "c": 0.75})
    assert [c.id for c, _ in fuse(keyword, vector, alpha=0.0, fusion="relative")] == ["a", "b", "c"]


def test_reciprocal_rank_fusion():
    keyword = [ScoredChunk(chunk("a"), 3.0), ScoredChunk(chunk("b"), 2.0)]
    vector = [ScoredChunk(chunk("b"), 0.9), ScoredChunk(chunk("a"), 0.1)]
    fused = fuse(keyword, vector, alpha=0.5, fusion="rrf")
    assert {c.id for c, _ in fused} == {"a", "b"}
    assert fused[0][1] == pytest.approx(0.5 / 60 + 0.5 / 61)


def test_diversify_caps_each_page():
    ranked = [(chunk(f"{u}{i}", u), 1.0) for u in "xy" for i in range(3)]
    assert [c.id for c, _ in diversify(ranked, 3, per_source=2)] == ["x0", "x1", "y0"]


def test_diversify_gives_the_slots_no_other_page_fills_to_the_capped_pages():
    """A manual on one page (Bash's, Go's spec): its next chunks fill the slots, best first."""
    one_page = [(chunk(f"m{i}", "m"), 1.0 - i / 10) for i in range(6)]
    assert [c.id for c, _ in diversify(one_page, 4, per_source=2)] == ["m0", "m1", "m2", "m3"]
    two_pages = [
        (chunk("x0", "x"), 1.0),
        (chunk("x1", "x"), 0.9),
        (chunk("x2", "x"), 0.8),
        (chunk("y0", "y"), 0.5),
    ]
    assert [c.id for c, _ in diversify(two_pages, 4, per_source=2)] == ["x0", "x1", "x2", "y0"]
