"""One contract for every store backend: SQLite, LanceDB, Weaviate's protocol fake (tests/weaviate_fake.py)
and a real Weaviate when RAGCORD_TEST_WEAVIATE_URL is set."""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest

from ragcord.errors import NotFound
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.migrate import copy_knowledge_base
from ragcord.knowledge.search import fuse
from ragcord.knowledge.stores import Store, StoredChunk
from ragcord.knowledge.stores.lancedb import LanceDBStore
from ragcord.knowledge.stores.sqlite import SQLiteStore
from tests.weaviate_fake import running_weaviate

DIM = 4


@pytest.fixture(scope="module")
def weaviate_fake():
    with running_weaviate() as fake:
        yield fake
        assert fake.unimplemented == []  # the store used nothing the fake does not do as Weaviate does


def weaviate_address(request) -> tuple[str, int, str | None]:
    """A real Weaviate when RAGCORD_TEST_WEAVIATE_URL names one, else the protocol fake."""
    if request.param == "weaviate":
        url = os.environ.get("RAGCORD_TEST_WEAVIATE_URL")
        if not url:
            pytest.skip("set RAGCORD_TEST_WEAVIATE_URL to run against a real Weaviate (README, Tests)")
        port = int(os.environ.get("RAGCORD_TEST_WEAVIATE_GRPC_PORT", "50051"))
        return url, port, os.environ.get("RAGCORD_TEST_WEAVIATE_API_KEY")
    fake = request.getfixturevalue("weaviate_fake")
    return fake.http_url, fake.grpc_port, None


@pytest.fixture(params=["sqlite", "lancedb", "weaviate-fake", "weaviate"])
def store(request, tmp_path):
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "store.sqlite3", dim=DIM)
        yield sqlite
        sqlite.close()
        return
    if request.param == "lancedb":
        yield LanceDBStore(tmp_path, dim=DIM)
        return
    from ragcord.knowledge.stores.weaviate import WeaviateStore, connect

    url, grpc_port, api_key = weaviate_address(request)
    client = connect(url, grpc_port=grpc_port, api_key=api_key)
    collection = f"RagcordTest{uuid.uuid4().hex[:12]}"  # fresh per test, deleted after
    try:
        yield WeaviateStore(client, dim=DIM, collection=collection)
    finally:
        client.collections.delete(collection)
        client.close()


def page(url: str, n: int, *, text: str = "common words", vectors: list[list[float]] | None = None):
    return [
        StoredChunk(
            id=chunk_id(url, i),
            url=url,
            title=f"Title of {url}",
            heading=f"Section {i // 2}",
            chunk_index=i,
            text=f"{text} {i}",
            content_hash=f"hash-{url}",
            indexed_at=100.0 + i,
            vector=vectors[i] if vectors else [1.0, 0.1 * i, 0.0, 0.0],
        )
        for i in range(n)
    ]


def test_writing_the_same_page_twice_changes_nothing(store: Store):
    store.replace_page("kb", "http://x/a", page("http://x/a", 3))
    store.replace_page("kb", "http://x/a", page("http://x/a", 3))

    assert store.count_chunks("kb") == 3
    assert [(s.url, s.chunk_count) for s in store.list_sources("kb")] == [("http://x/a", 3)]


def test_replacing_a_page_keeps_exactly_its_new_chunks(store: Store):
    store.replace_page("kb", "http://x/a", page("http://x/a", 4))
    store.replace_page("kb", "http://x/b", page("http://x/b", 2))

    store.replace_page("kb", "http://x/a", page("http://x/a", 2, text="shrunk"))
    assert store.count_chunks("kb") == 4
    assert [c.text for c in store.get_source("kb", "http://x/a").chunks] == ["shrunk 0", "shrunk 1"]

    store.replace_page("kb", "http://x/a", page("http://x/a", 5, text="grown"))
    assert store.count_chunks("kb") == 7
    assert [c.text for c in store.get_source("kb", "http://x/a").chunks] == [f"grown {i}" for i in range(5)]
    assert store.get_source("kb", "http://x/b").source.chunk_count == 2

    store.replace_page("kb", "http://x/a", [])
    assert [s.url for s in store.list_sources("kb")] == ["http://x/b"]


def test_deleting_a_source_returns_its_chunk_count(store: Store):
    store.replace_page("kb", "http://x/a", page("http://x/a", 3))
    store.replace_page("kb", "http://x/b", page("http://x/b", 1))

    assert store.delete_source("kb", "http://x/a") == 3

    assert store.count_chunks("kb") == 1
    with pytest.raises(NotFound):
        store.get_source("kb", "http://x/a")
    with pytest.raises(NotFound):
        store.delete_source("kb", "http://x/a")
    with pytest.raises(NotFound):
        store.delete_source("never", "http://x/a")


def test_removing_chunks_keeps_the_rest_of_the_page_and_other_pages(store: Store):
    store.replace_page("kb", "http://x/print", page("http://x/print", 5))
    store.replace_page("kb", "http://x/b", page("http://x/b", 2))

    store.replace_page("kb", "http://x/b", [c for c in page("http://x/b", 4) if c.chunk_index != 1])
    assert [c.chunk_index for c in store.get_source("kb", "http://x/b").chunks] == [0, 2, 3]
    store.replace_page("kb", "http://x/b", page("http://x/b", 2))

    store.remove_chunks("kb", "http://x/print", [1, 3, 7])
    store.remove_chunks("kb", "http://x/print", [])
    store.remove_chunks("never", "http://x/print", [0])

    assert [c.chunk_index for c in store.get_source("kb", "http://x/print").chunks] == [0, 2, 4]
    assert [c.chunk_index for c in store.get_source("kb", "http://x/b").chunks] == [0, 1]
    assert [c.chunk_index for c in store.chunks_of("kb", "http://x/print", [2, 3, 4])] == [2, 4]


def test_a_knowledge_base_never_sees_another_ones_chunks(store: Store):
    store.replace_page("one", "http://x/a", page("http://x/a", 2, text="zebra"))
    store.replace_page("two", "http://y/b", page("http://y/b", 1, text="yak"))

    assert [s.url for s in store.list_sources("two")] == ["http://y/b"]
    assert store.count_chunks("two") == 1
    assert store.keyword_search("two", "zebra", 10) == []
    assert {r.chunk.url for r in store.vector_search("two", [1.0, 0.0, 0.0, 0.0], 10)} == {"http://y/b"}
    assert store.chunks_of("two", "http://x/a", [0, 1]) == []
    with pytest.raises(NotFound):
        store.get_source("two", "http://x/a")
    assert store.count_chunks("three") == 0 and store.list_sources("three") == []
    assert {"one", "two"} <= set(store.knowledge_bases())


def test_keyword_search_puts_the_chunk_with_a_rare_word_first(store: Store):
    store.replace_page("kb", "http://x/a", page("http://x/a", 5, text="install the package with pip"))
    rare = page("http://x/b", 1, text="configure the flux capacitor with pip")
    store.replace_page("kb", "http://x/b", rare)

    results = store.keyword_search("kb", "capacitor", 3)

    assert results[0].chunk.id == rare[0].id
    assert results[0].chunk.text == "configure the flux capacitor with pip 0"
    assert all(r.score > 0 for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_vector_search_puts_the_nearest_vector_first(store: Store):
    axes = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    store.replace_page("kb", "http://x/a", page("http://x/a", 4, vectors=axes))

    results = store.vector_search("kb", [0.2, 0.0, 0.9, 0.1], 4)

    assert [r.chunk.chunk_index for r in results] == [2, 0, 3, 1]
    assert results[0].score == pytest.approx(0.9 / 0.86**0.5, abs=1e-3)  # cosine similarity
    assert results[-1].score == pytest.approx(0.0, abs=1e-3)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_searches_can_be_limited_to_one_source(store: Store):
    store.replace_page("kb", "http://x/a", page("http://x/a", 3, text="shared term"))
    store.replace_page("kb", "http://x/b", page("http://x/b", 3, text="shared term"))

    keyword = store.keyword_search("kb", "shared", 10, source="http://x/b")
    vector = store.vector_search("kb", [1.0, 0.0, 0.0, 0.0], 10, source="http://x/b")

    assert {r.chunk.url for r in keyword} == {"http://x/b"} and len(keyword) == 3
    assert {r.chunk.url for r in vector} == {"http://x/b"} and len(vector) == 3


def test_a_source_comes_back_in_page_order(store: Store):
    store.replace_page("kb", "http://x/a", list(reversed(page("http://x/a", 6))))

    detail = store.get_source("kb", "http://x/a")

    assert [c.chunk_index for c in detail.chunks] == list(range(6))
    assert detail.text == "\n\n".join(f"common words {i}" for i in range(6))
    assert (detail.source.title, detail.source.chunk_count) == ("Title of http://x/a", 6)
    assert (detail.source.content_hash, detail.source.indexed_at) == ("hash-http://x/a", 105.0)
    assert [c.chunk_index for c in store.chunks_of("kb", "http://x/a", [4, 1, 9])] == [1, 4]


def test_chunks_at_several_pages_come_in_one_read_by_page_and_position(store: Store):
    store.replace_page("kb", "http://x/b", page("http://x/b", 4))
    store.replace_page("kb", "http://x/it's", page("http://x/it's", 3))
    store.replace_page("kb", "http://x/other", page("http://x/other", 3))

    found = store.chunks_at("kb", {"http://x/it's": [2, 0, 9], "http://x/b": [3, 1, 1], "http://x/none": [0]})

    assert [(c.url, c.chunk_index) for c in found] == [
        ("http://x/b", 1),
        ("http://x/b", 3),
        ("http://x/it's", 0),
        ("http://x/it's", 2),
    ]
    assert found[0] == dataclasses.replace(page("http://x/b", 4)[1], vector=[])
    assert store.chunks_at("kb", {}) == [] and store.chunks_at("kb", {"http://x/b": []}) == []
    assert store.chunks_at("never", {"http://x/b": [0]}) == []


def test_anchors_round_trip_through_every_read(store: Store):
    anchors = ["", "install", "install", "réglages-avancés", "faq:why?", "a(b)"]
    chunks = [dataclasses.replace(c, anchor=a) for c, a in zip(page("http://x/a", 6), anchors, strict=True)]
    store.replace_page("kb", "http://x/a", chunks)

    def by_index(found: list[StoredChunk]) -> dict[int, str]:
        return {c.chunk_index: c.anchor for c in found}

    everything = dict(enumerate(anchors))
    assert by_index(store.get_source("kb", "http://x/a").chunks) == everything
    assert by_index(store.chunks_of("kb", "http://x/a", [1, 3])) == {1: "install", 3: "réglages-avancés"}
    assert by_index([r.chunk for r in store.keyword_search("kb", "common", 6)]) == everything
    assert by_index([r.chunk for r in store.vector_search("kb", [1.0, 0.0, 0.0, 0.0], 6)]) == everything
    assert by_index([c for batch in store.export("kb") for c in batch]) == everything

    store.replace_page("kb", "http://x/a", [dataclasses.replace(c, anchor="moved") for c in chunks[:2]])

    assert by_index(store.get_source("kb", "http://x/a").chunks) == {0: "moved", 1: "moved"}


def test_store_copy_carries_anchors_into_and_out_of_the_store(store: Store, tmp_path):
    lance = LanceDBStore(tmp_path / "copy-source", dim=DIM)
    lance.replace_page(
        "kb",
        "http://x/a",
        [dataclasses.replace(c, anchor=f"s{c.chunk_index}") for c in page("http://x/a", 3)],
    )
    back = LanceDBStore(tmp_path / "copy-back", dim=DIM)

    copy_knowledge_base(lance, store, "kb")
    copy_knowledge_base(store, back, "kb")

    for copied in (store, back):
        assert [c.anchor for c in copied.get_source("kb", "http://x/a").chunks] == ["s0", "s1", "s2"]


def test_ten_thousand_chunks_in_page_batches(store: Store):
    for p in range(100):
        url = f"http://x/page-{p}"
        store.replace_page("kb", url, page(url, 100, text=f"page{p} body"))
    store.optimize("kb")

    assert store.count_chunks("kb") == 10_000
    sources = store.list_sources("kb")
    assert len(sources) == 100 and {s.chunk_count for s in sources} == {100}
    assert {r.chunk.url for r in store.keyword_search("kb", "page42", 5)} == {"http://x/page-42"}
    assert len(store.get_source("kb", "http://x/page-7").chunks) == 100
    assert sum(len(batch) for batch in store.export("kb", batch_size=3000)) == 10_000


def hybrid_corpus(store: Store) -> dict[str, str]:
    """Chunks that match the query "flux capacitor" / vector [1, 0, 0, 0] by words, by meaning or both."""
    texts = {
        "both": ("flux capacitor", [0.8, 0.6, 0.0, 0.0]),  # best BM25 (shortest), cosine 0.8
        "words": ("the flux capacitor needs more power", [0.0, 0.0, 0.0, 1.0]),  # cosine 0
        "meaning": ("nothing in common here", [1.0, 0.0, 0.0, 0.0]),  # cosine 1, no query word
        "filler1": ("an unrelated paragraph", [0.0, 1.0, 0.0, 0.0]),
        "filler2": ("another unrelated paragraph", [0.0, 0.0, 1.0, 0.0]),
    }
    ids = {}
    for name, (text, vector) in texts.items():
        url = f"http://x/{name}"
        chunk = StoredChunk(
            id=chunk_id(url, 0),
            url=url,
            title=name,
            heading="",
            chunk_index=0,
            text=text,
            content_hash=name,
            indexed_at=1.0,
            vector=vector,
        )
        store.replace_page("kb", url, [chunk])
        ids[chunk.id] = name
    return ids


@pytest.mark.parametrize("fusion", ["relative", "rrf"])
def test_hybrid_ranking_moves_from_words_to_meaning_with_alpha(store: Store, fusion):
    names = hybrid_corpus(store)
    keyword = store.keyword_search("kb", "flux capacitor", 10)
    vector = store.vector_search("kb", [1.0, 0.0, 0.0, 0.0], 10)
    assert [names[r.chunk.id] for r in keyword] == ["both", "words"]
    assert [names[r.chunk.id] for r in vector][:2] == ["meaning", "both"]

    def ranking(alpha: float) -> list[str]:
        return [names[chunk.id] for chunk, _ in fuse(keyword, vector, alpha=alpha, fusion=fusion)]

    # Relative fusion scales each list to 0..1, so a list's last hit scores 0 like a miss: only the
    # leader of each list is certain.
    assert ranking(0.0)[0] == "both"
    assert ranking(1.0)[0] == "meaning"
    assert ranking(0.5)[0] == "both"  # good on both signals beats best on one


def another_process(store: Store) -> Store:
    """A second store on the same backend, as a worker process or the bot holds one."""
    if isinstance(store, LanceDBStore):
        return LanceDBStore(store.path, dim=store.dim)
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, dim=store.dim)
    from ragcord.knowledge.stores.weaviate import WeaviateStore

    assert isinstance(store, WeaviateStore)
    return WeaviateStore(store.client, dim=store.dim, collection=store.name)


def test_dropping_a_knowledge_base_removes_it_everywhere_and_nothing_else(store: Store):
    other = another_process(store)
    store.replace_page("gone", "http://x/a", page("http://x/a", 3, text="zebra"))
    other.replace_page("gone", "http://x/b", page("http://x/b", 2, text="zebra"))  # it knows "gone" now
    store.replace_page("kept", "http://x/a", page("http://x/a", 1, text="zebra"))
    assert other.count_chunks("gone") == 5

    assert store.drop_knowledge_base("gone") == 5

    assert "gone" not in store.knowledge_bases() and "kept" in store.knowledge_bases()
    for view in (store, other):  # the other process notices without a restart
        assert view.count_chunks("gone") == 0
        assert view.list_sources("gone") == []
        assert view.keyword_search("gone", "zebra", 5) == []
        assert view.vector_search("gone", [1.0, 0.0, 0.0, 0.0], 5) == []
        with pytest.raises(NotFound):
            view.get_source("gone", "http://x/a")
    assert store.count_chunks("kept") == 1
    with pytest.raises(NotFound):
        store.drop_knowledge_base("gone")

    other.replace_page("gone", "http://x/c", page("http://x/c", 1))  # crawled again from scratch
    assert [s.url for s in store.list_sources("gone")] == ["http://x/c"]
