"""Ranking that does not depend on the store's order of ties, pages ranked by all their evidence, and
abbreviations spelled out for search."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

from hypothesis import given
from hypothesis import strategies as st

from ragcord.knowledge.abbreviations import spelled_out
from ragcord.knowledge.search import Retriever, by_page, page_scores, stable
from ragcord.knowledge.stores import ScoredChunk, StoredChunk


def chunk(cid: str, url: str = "u") -> StoredChunk:
    return StoredChunk(
        id=cid, url=url, title="", heading="", chunk_index=0, text=cid, content_hash="", indexed_at=0.0
    )


def test_ties_are_broken_by_chunk_id_whatever_order_the_store_returns():
    results = [ScoredChunk(chunk(c), 1.0) for c in "dacb"] + [ScoredChunk(chunk("e"), 2.0)]
    orders = set()
    for seed in range(5):
        shuffled = results[:]
        random.Random(seed).shuffle(shuffled)
        orders.add(tuple(r.chunk.id for r in stable(shuffled, 10)))
    assert orders == {("e", "a", "b", "c", "d")}


def test_a_pool_is_not_cut_inside_a_tie():
    results = [ScoredChunk(chunk("a"), 3.0), ScoredChunk(chunk("c"), 1.0), ScoredChunk(chunk("b"), 1.0)]
    assert [r.chunk.id for r in stable(results, 2)] == ["a", "b", "c"]


def test_a_tie_the_store_may_have_cut_is_left_out():
    # Asked for 3 and got 3: other chunks scoring 1.0 may exist that the store did not return.
    results = [ScoredChunk(chunk("a"), 3.0), ScoredChunk(chunk("b"), 2.0), ScoredChunk(chunk("c"), 1.0)]
    assert [r.chunk.id for r in stable(results, 3, fetched=3)] == ["a", "b"]
    only_ties = [ScoredChunk(chunk("b"), 1.0), ScoredChunk(chunk("a"), 1.0)]
    assert [r.chunk.id for r in stable(only_ties, 2, fetched=2)] == ["a", "b"]


def test_a_page_with_several_matching_chunks_beats_one_stray_hit():
    ranked = [(chunk("stray", "p1"), 0.9), (chunk("a1", "p2"), 0.8), (chunk("a2", "p2"), 0.7)]
    assert page_scores(ranked, decay=0.5) == {"p1": 0.9, "p2": 0.8 + 0.35}
    assert [c.id for c, _ in by_page(ranked, decay=0.5)] == ["a1", "stray", "a2"]
    assert by_page(ranked, decay=0.0) == ranked  # off: the chunks' own order


class _TiedStore:
    """A store returning equally scored chunks in a different order on every call."""

    def __init__(self) -> None:
        self.calls = 0

    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        self.calls += 1
        found = [ScoredChunk(chunk(f"c{i}", f"page{i}"), 1.0) for i in range(40)]
        random.Random(self.calls).shuffle(found)
        return found[:k]

    def chunks_of(self, kb: str, url: str, indexes: list[int]) -> list[StoredChunk]:
        return []

    def chunks_at(self, kb: str, positions: dict[str, list[int]]) -> list[StoredChunk]:
        return []


class _NoVectors:
    dim = None


def test_the_same_question_gets_the_same_hits_every_time():
    retriever = Retriever(_TiedStore(), _NoVectors())  # type: ignore[arg-type]
    answers = {tuple(h.chunk.id for h in retriever.search("kb", "tied words", k=5)) for _ in range(5)}
    assert len(answers) == 1


class _RecordingStore(_TiedStore):
    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        self.queries.append(query)
        return super().keyword_search(kb, query, k, source=source)


def test_abbreviations_are_spelled_out_for_the_search_and_the_words_stay():
    store = _RecordingStore()
    Retriever(store, _NoVectors()).search("kb", "how do I start the REPL?")  # type: ignore[arg-type]
    assert store.queries == ["how do I start the REPL? (interactive interpreter)"]


def test_each_meaning_is_added_once_and_not_when_the_question_already_says_it():
    assert spelled_out("regex or Regexp? see the cfg and config") == (
        "regex or Regexp? see the cfg and config (regular expression, configuration)"
    )
    assert spelled_out("a regular expression, not a regex") == "a regular expression, not a regex"
    assert spelled_out("copy a folder") == "copy a folder"  # a synonym, not an abbreviation: left alone
    assert spelled_out("libfoo and os.path.join") == "libfoo and os.path.join"  # only whole words


@given(st.text(max_size=80))
def test_the_question_is_always_searched_whole_and_spelling_out_twice_adds_nothing(query):
    once = spelled_out(query)
    assert once.startswith(query)
    assert spelled_out(once) == once


class _Pages:
    """Two pages of five chunks (sections of two or three chunks); counts the reads of neighbours."""

    def __init__(self) -> None:
        self.chunks = [
            StoredChunk(
                id=f"{url}#{i}",
                url=url,
                title=url,
                heading="first" if i < 3 else "second",
                chunk_index=i,
                text=f"{url} text {i}",
                content_hash="",
                indexed_at=0.0,
            )
            for url in ("p1", "p2")
            for i in range(5)
        ]
        self.reads: list[dict[str, list[int]]] = []

    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        hits = ["p1#2", "p1#3", "p2#0", "p2#4"]  # two of one page, a page's first and last chunk
        by_id = {c.id: c for c in self.chunks}
        return [ScoredChunk(by_id[cid], 4.0 - n) for n, cid in enumerate(hits)]

    def chunks_at(self, kb: str, positions: dict[str, list[int]]) -> list[StoredChunk]:
        self.reads.append({url: sorted(found) for url, found in positions.items()})
        return [c for c in self.chunks if c.chunk_index in positions.get(c.url, ())]


def test_neighbours_of_every_hit_come_in_one_read_and_stay_within_each_section():
    store = _Pages()

    hits = Retriever(store, _NoVectors(), page_decay=0.0).search("kb", "text", k=4)  # type: ignore[arg-type]

    assert store.reads == [{"p1": [1, 2, 3, 4], "p2": [1, 3, 5]}]
    assert {h.chunk.id: h.passage for h in hits} == {
        "p1#2": "p1 text 1\n\np1 text 2",  # p1#3 is in the next section
        "p1#3": "p1 text 3\n\np1 text 4",
        "p2#0": "p2 text 0\n\np2 text 1",
        "p2#4": "p2 text 3\n\np2 text 4",
    }
    unexpanded = Retriever(store, _NoVectors()).search("kb", "text", k=4, expand=False)  # type: ignore[arg-type]
    assert [h.passage for h in unexpanded] == [h.chunk.text for h in unexpanded] and len(store.reads) == 1


class _PagesStore(_TiedStore):
    """Site-wide search finds one section of each page; asked about one page, it lists all of its sections."""

    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        if source is None:
            return [ScoredChunk(chunk("a1", "a"), 3.0), ScoredChunk(chunk("b1", "b"), 2.0)]
        return [ScoredChunk(chunk(f"{source}{i}", source), 1.0 / i) for i in (1, 2, 3)][:k]


def test_the_second_stage_puts_the_best_pages_other_sections_right_after_its_first_hit():
    plain = Retriever(_PagesStore(), _NoVectors()).search("kb", "q", k=2)  # type: ignore[arg-type]
    assert [h.chunk.id for h in plain] == ["a1", "b1"]
    again = Retriever(_PagesStore(), _NoVectors(), reread=2)  # type: ignore[arg-type]
    assert [h.chunk.id for h in again.search("kb", "q", k=2)] == ["a1", "a2", "a3", "b1"]


class _HybridStore(_TiedStore):
    """Keyword and vector candidates (different chunks, so fusion has work to do)."""

    def __init__(self) -> None:
        super().__init__()
        self.keyword_started = threading.Event()

    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        self.keyword_started.set()
        return [ScoredChunk(chunk(f"k{i}", f"page{i}"), 10.0 - i) for i in range(k)]

    def vector_search(
        self, kb: str, vector: list[float], k: int, *, source: str | None = None
    ) -> list[ScoredChunk]:
        return [ScoredChunk(chunk(f"v{i}", f"page{i % 3}"), 0.9 - i / 100) for i in range(k)]


class _WaitingEmbedder:
    """Embeds the query only once the keyword search has started (or a second has passed)."""

    dim = 2

    def __init__(self, store: _HybridStore) -> None:
        self.store = store
        self.saw_keyword_search = False

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.saw_keyword_search = self.store.keyword_started.wait(timeout=1.0)
        return [[1.0, 0.0] for _ in texts]


def test_the_keyword_search_runs_beside_the_query_embedding_and_finds_the_same_hits():
    # Given a retriever with an executor for its keyword search, and one without
    with ThreadPoolExecutor(1) as pool:
        store = _HybridStore()
        embedder = _WaitingEmbedder(store)
        beside = Retriever(store, embedder, executor=pool)  # type: ignore[arg-type]

        # When each searches
        hits = beside.search("kb", "question", k=5)
        other = _HybridStore()
        other.keyword_started.set()  # (its embedder need not wait: the search is one call after the other)
        alone = Retriever(other, _WaitingEmbedder(other)).search("kb", "question", k=5)  # type: ignore[arg-type]

    # Then the keyword search had started while the query was being embedded, and the hits are the same
    assert embedder.saw_keyword_search
    assert [(h.chunk.id, h.score, h.keyword_score, h.vector_score) for h in hits] == [
        (h.chunk.id, h.score, h.keyword_score, h.vector_score) for h in alone
    ]
