"""The search's learned second stage: what its features read of a candidate, and how Retriever uses it."""

from __future__ import annotations

from ragcord.knowledge.rerank import (
    RERANK_FEATURES,
    Candidate,
    RerankTuning,
    candidate_features,
    identifier_parts,
    learned_order,
)
from ragcord.knowledge.search import Retriever
from ragcord.knowledge.stores import ScoredChunk, StoredChunk


def chunk(
    cid: str, text: str, *, url: str = "u", heading: str = "", title: str = "", index: int = 0
) -> StoredChunk:
    return StoredChunk(
        id=cid,
        url=url,
        title=title,
        heading=heading,
        chunk_index=index,
        text=text,
        content_hash="",
        indexed_at=0.0,
    )


def feature(rows: list[list[float]], row: int, name: str) -> float:
    return rows[row][RERANK_FEATURES.index(name)]


def test_identifiers_are_split_at_underscores_and_case_changes():
    parts = identifier_parts("Use `lru_cache` or:\n\n```\nel = getElementById(x)\n```\n\nnot plain words")
    assert {"lru", "cach", "element", "id"} <= parts  # ("get" is a stop word)
    assert "plain" not in parts  # prose is no identifier


def test_every_feature_is_between_0_and_1():
    candidates = [
        Candidate(chunk("a", "Call `lru_cache` on the function.", heading="Caching"), 0.9, 12.0, 0.7, 0),
        Candidate(chunk("b", "```\nx = 1\n```", url="v", index=4), 0.4, None, 0.5, 1),
        Candidate(chunk("c", "Unrelated text", url="v", index=9), 0.0, 3.0, None, 2, extra=True),
    ]
    rows = candidate_features("how do I cache a function result", candidates)
    assert len(rows) == 3 and all(len(row) == len(RERANK_FEATURES) for row in rows)
    assert all(0.0 <= value <= 1.0 for row in rows for value in row)


def test_the_features_read_heading_code_and_the_question():
    candidates = [
        Candidate(
            chunk("a", "Some prose about other things.", heading="Page > Other", index=3), 1.0, 5.0, 0.8, 0
        ),
        Candidate(
            chunk("b", "Decorate it:\n\n```\n@lru_cache\ndef f(): ...\n```", heading="Page > Cache results"),
            0.0,
            None,
            0.6,
            1,
            extra=True,
        ),
    ]
    rows = candidate_features("how do i cache results", candidates)
    assert feature(rows, 1, "heading") == 1.0 and feature(rows, 0, "heading") == 0.0
    assert feature(rows, 1, "identifier") == 0.5  # "cache" is part of `lru_cache`, "results" is not code
    assert feature(rows, 1, "how_to_code") == 1.0 and feature(rows, 0, "code_block") == 0.0
    assert feature(rows, 1, "extra") == 1.0 and feature(rows, 1, "fused") == 0.0
    assert feature(rows, 1, "first") == 1.0 and feature(rows, 0, "first") == 0.25
    assert feature(rows, 1, "phrase") == 1.0  # "cache results" adjacent in its heading
    assert feature(rows, 0, "top_page") == 1.0 and feature(rows, 0, "order") == 1.0


def test_the_learned_order_keeps_the_first_stages_order_on_ties():
    assert learned_order([[0.0], [1.0], [0.0]], [1.0]) == [1, 0, 2]
    assert learned_order([[0.5], [0.5]], [0.0]) == [0, 1]


class _Store:
    """Site-wide search finds page a's first section and page b's; page a's own search finds its others."""

    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        if source is None:
            return [
                ScoredChunk(chunk("a1", "intro words", url="a"), 3.0),
                ScoredChunk(chunk("b1", "other words", url="b"), 2.0),
            ]
        return [ScoredChunk(chunk(f"{source}-code", "```\nmake install\n```", url=source, index=5), 1.0)]

    def chunks_at(self, kb: str, positions: dict[str, list[int]]) -> list[StoredChunk]:
        return []


class _NoVectors:
    dim = None


def test_the_second_stage_can_bring_a_section_only_its_pages_own_search_found():
    extra = RERANK_FEATURES.index("extra")
    weights = tuple(1.0 if i == extra else 0.0 for i in range(len(RERANK_FEATURES)))
    plain = Retriever(_Store(), _NoVectors()).search("kb", "install", k=2)  # type: ignore[arg-type]
    assert [h.chunk.id for h in plain] == ["a1", "b1"]
    learned = Retriever(_Store(), _NoVectors(), second_stage=RerankTuning(weights=weights, pages=2))  # type: ignore[arg-type]
    hits = learned.search("kb", "install", k=2)
    assert [h.chunk.id for h in hits][0] in ("a-code", "b-code")
    assert hits[0].keyword_score == 1.0  # its score from the page's own search
    assert hits[0].score >= hits[1].score  # scores stay in the new order


def test_no_weights_keep_the_first_stage():
    off = Retriever(_Store(), _NoVectors(), second_stage=RerankTuning(weights=()))  # type: ignore[arg-type]
    assert [h.chunk.id for h in off.search("kb", "install", k=2)] == ["a1", "b1"]


def test_a_follow_ups_query_keeps_the_first_stage():
    extra = RERANK_FEATURES.index("extra")
    weights = tuple(1.0 if i == extra else 0.0 for i in range(len(RERANK_FEATURES)))
    learned = Retriever(_Store(), _NoVectors(), second_stage=RerankTuning(weights=weights, pages=2))  # type: ignore[arg-type]
    hits = learned.search("kb", "install", k=2, learned=False)
    assert [h.chunk.id for h in hits] == ["a1", "b1"]
