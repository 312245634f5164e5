"""bench/ask.py's knowledge bases: built through the Store protocol alone, so any store can be measured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bench.ask import build_knowledge_base, copied_pages, keyword_matches, recall_at_10
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores.base import StoredChunk
from ragcord.knowledge.stores.sqlite import SQLiteStore

DIM = 8


def _base() -> list[StoredChunk]:
    rng = np.random.default_rng(1)
    chunks = []
    for page, count in (("http://site/a.html", 3), ("http://site/b.html", 2)):
        for index in range(count):
            vector = rng.standard_normal(DIM)
            chunks.append(
                StoredChunk(
                    id=chunk_id(page, index),
                    url=page,
                    title=page,
                    heading="",
                    chunk_index=index,
                    text=f"caching words of {page} part {index}",
                    content_hash="h",
                    indexed_at=0.0,
                    vector=(vector / np.linalg.norm(vector)).tolist(),
                )
            )
    return chunks


class _Embedder:
    dim = DIM

    def embed(self, texts):
        rng = np.random.default_rng(len(texts))
        return rng.standard_normal((len(texts), DIM)).tolist()


def test_copies_make_exactly_n_chunks_under_distinct_urls_with_vectors_near_their_originals():
    base = _base()

    pages = list(copied_pages(base, 12, np.random.default_rng(0)))

    chunks = [chunk for _, chunks in pages for chunk in chunks]
    assert len(chunks) == 12
    assert len({chunk.id for chunk in chunks}) == 12
    assert [url for url, _ in pages][:3] == [
        "http://site/a.html",
        "http://site/b.html",
        "http://site/a.html?copy=1",
    ]
    assert all(chunk.url == url for url, chunks in pages for chunk in chunks)
    assert pages[-1] == (pages[-1][0], pages[-1][1][:2])  # the last page cut short to make n
    copy = pages[2][1][0]
    assert copy.id == chunk_id("http://site/a.html?copy=1", 0) and copy.text == base[0].text
    assert np.isclose(np.linalg.norm(copy.vector), 1.0)
    assert 0.9 < float(np.dot(copy.vector, base[0].vector)) < 1.0


def test_a_knowledge_base_built_on_sqlite_holds_n_chunks_and_its_exact_search_has_full_recall(tmp_path):
    store = SQLiteStore(tmp_path / "ragcord.sqlite3", dim=DIM)
    try:
        build_knowledge_base(store, "kb", _base(), 40, seed=3)

        assert store.count_chunks("kb") == 40
        recall, _, _ = recall_at_10(store, _Embedder(), "kb")
        assert recall == 1.0
    finally:
        store.close()


def test_keyword_shares_of_chunks_matched_and_ranked_and_the_pools_kept(tmp_path):
    store = SQLiteStore(tmp_path / "ragcord.sqlite3", dim=DIM)
    try:
        chunks = [
            replace(chunk, text=f"{chunk.text} python worker quillstack") if i % 2 else chunk
            for i, chunk in enumerate(_base())
        ]
        build_knowledge_base(store, "kb", chunks, 400, seed=3)

        matched, ranked, same = keyword_matches(store, "kb")

        assert 0.0 <= ranked <= matched <= 1.0  # (medians: most fixture questions share no word here)
        assert same == 1.0  # too few chunks hold a rare word here: every match is ranked, as before
    finally:
        store.close()


def test_the_before_arm_of_ask_pairs_is_another_checkouts_store_on_the_same_file(tmp_path):
    from bench.ask_pairs import store_class_of
    from tests.conftest import ROOT

    store = SQLiteStore(tmp_path / "kb.sqlite3", dim=DIM)
    build_knowledge_base(store, "kb", _base(), 5, seed=0)

    before = store_class_of(ROOT)(store.path, dim=DIM)  # (this checkout, loaded as another one would be)

    assert before.__class__ is not SQLiteStore
    assert [r.chunk.id for r in before.keyword_search("kb", "caching part 2", 3)] == [
        r.chunk.id for r in store.keyword_search("kb", "caching part 2", 3)
    ]
    before.close()
    store.close()
