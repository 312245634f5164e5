"""The LanceDB store on disk: atomic page replacement, sources, deletes, embedder mismatches, old tables."""

from __future__ import annotations

import dataclasses

import lancedb
import pyarrow as pa
import pytest

from ragcord.errors import NotFound, StoreError
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk
from ragcord.knowledge.stores.lancedb import LanceDBStore, _add_missing_columns


def chunks(url: str, n: int, dim: int | None = 4, text: str = "text") -> list[StoredChunk]:
    return [
        StoredChunk(
            id=chunk_id(url, i),
            url=url,
            title=f"T {url}",
            heading="H",
            chunk_index=i,
            text=f"{text} {i}",
            content_hash="h",
            indexed_at=1.0 + i,
            vector=[float(i)] * dim if dim else [],
        )
        for i in range(n)
    ]


def test_replacing_a_page_keeps_exactly_its_new_chunks(tmp_path):
    store = LanceDBStore(tmp_path, dim=4)
    store.replace_page("kb", "http://x/a", chunks("http://x/a", 3))
    store.replace_page("kb", "http://x/b", chunks("http://x/b", 2))
    store.replace_page("kb", "http://x/a", chunks("http://x/a", 3))  # same again: idempotent
    assert store.count_chunks("kb") == 5
    store.replace_page("kb", "http://x/a", chunks("http://x/a", 1, text="new"))  # the page shrank
    assert store.count_chunks("kb") == 3
    detail = store.get_source("kb", "http://x/a")
    assert [c.text for c in detail.chunks] == ["new 0"] and detail.text == "new 0"
    assert [(s.url, s.chunk_count) for s in store.list_sources("kb")] == [
        ("http://x/a", 1),
        ("http://x/b", 2),
    ]


def test_a_page_with_a_quote_in_its_url_is_handled(tmp_path):
    store = LanceDBStore(tmp_path, dim=None)
    url = "http://x/it's"
    store.replace_page("kb", url, chunks(url, 2, dim=None))
    assert store.get_source("kb", url).source.chunk_count == 2
    assert store.delete_source("kb", url) == 2
    with pytest.raises(NotFound):
        store.get_source("kb", url)


def test_knowledge_bases_are_separate(tmp_path):
    store = LanceDBStore(tmp_path, dim=4)
    store.replace_page("one", "http://x/a", chunks("http://x/a", 2))
    assert store.list_sources("two") == []
    assert store.count_chunks("two") == 0
    with pytest.raises(NotFound):
        store.delete_source("two", "http://x/a")


def test_another_process_sees_writes(tmp_path):
    writer, reader = LanceDBStore(tmp_path, dim=4), LanceDBStore(tmp_path, dim=4)
    assert reader.count_chunks("kb") == 0
    writer.replace_page("kb", "http://x/a", chunks("http://x/a", 2))
    assert reader.count_chunks("kb") == 2
    writer.replace_page("kb", "http://x/b", chunks("http://x/b", 2))
    assert len(reader.list_sources("kb")) == 2


def test_an_embedder_change_is_refused_with_a_clear_error(tmp_path):
    LanceDBStore(tmp_path, dim=4).replace_page("kb", "http://x/a", chunks("http://x/a", 1))
    with pytest.raises(StoreError, match="holds 4-dimension vectors"):
        LanceDBStore(tmp_path, dim=8).replace_page("kb", "http://x/a", chunks("http://x/a", 1, dim=8))
    with pytest.raises(StoreError, match="was indexed with vectors"):
        LanceDBStore(tmp_path, dim=None).replace_page("kb", "http://x/a", chunks("http://x/a", 1, dim=None))


def test_optimize_builds_the_full_text_index(tmp_path):
    store = LanceDBStore(tmp_path, dim=4)
    store.replace_page("kb", "http://x/a", chunks("http://x/a", 3))
    store.optimize("kb")
    table = store.db.open_table("kb_kb")
    assert any("text" in index.columns for index in table.list_indices())
    assert store.count_chunks("kb") == 3


def test_optimize_indexes_urls_once_and_page_reads_stay_exact(tmp_path):
    store = LanceDBStore(tmp_path, dim=4)
    store.replace_page("kb", "http://x/a", chunks("http://x/a", 3))
    store.optimize("kb")
    store.replace_page("kb", "http://x/b", chunks("http://x/b", 2))  # written after the index: still found
    store.optimize("kb")

    url_indexes = [i for i in store.db.open_table("kb_kb").list_indices() if i.columns == ["url"]]
    assert len(url_indexes) == 1
    assert [c.chunk_index for c in store.get_source("kb", "http://x/b").chunks] == [0, 1]
    assert [
        (c.url, c.chunk_index) for c in store.chunks_at("kb", {"http://x/a": [2], "http://x/b": [0]})
    ] == [
        ("http://x/a", 2),
        ("http://x/b", 0),
    ]
    assert store.delete_source("kb", "http://x/a") == 3


def test_past_a_size_optimize_builds_a_vector_index_and_search_stays_exact(tmp_path):
    import numpy as np

    rng = np.random.default_rng(7)
    store = LanceDBStore(tmp_path, dim=16, ann_min_rows=500)
    vectors = rng.normal(size=(600, 16)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for page in range(60):
        url = f"http://x/{page}"
        store.replace_page(
            "kb",
            url,
            [
                StoredChunk(
                    id=chunk_id(url, i),
                    url=url,
                    title="t",
                    heading="",
                    chunk_index=i,
                    text=f"chunk {i}",
                    content_hash="h",
                    indexed_at=0.0,
                    vector=vectors[page * 10 + i].tolist(),
                )
                for i in range(10)
            ],
        )
    query = vectors[123].tolist()
    before = [hit.chunk.id for hit in store.vector_search("kb", query, 10)]
    store.optimize("kb")
    table = store.db.open_table("kb_kb")
    assert any("vector" in index.columns for index in table.list_indices())
    after = [hit.chunk.id for hit in store.vector_search("kb", query, 10)]
    assert after[0] == before[0] == chunk_id("http://x/12", 3)
    assert len(set(after) & set(before)) >= 9


def old_table(path, kb: str, pages: dict[str, int]) -> None:
    """A knowledge base as the version before anchors wrote it: no `anchor` column, indexes built."""
    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("url", pa.string(), nullable=False),
            pa.field("title", pa.string()),
            pa.field("heading", pa.string()),
            pa.field("chunk_index", pa.int32()),
            pa.field("text", pa.string()),
            pa.field("content_hash", pa.string()),
            pa.field("indexed_at", pa.float64()),
            pa.field("vector", pa.list_(pa.float32(), 4)),
        ]
    )
    rows = [
        {name: getattr(c, name) for name in schema.names}
        for url, n in pages.items()
        for c in chunks(url, n, text="older words")
    ]
    table = lancedb.connect(str(path)).create_table(LanceDBStore.table_name(kb), schema=schema)
    table.add(pa.Table.from_pylist(rows, schema=schema))
    table.create_fts_index("text")


def anchored(url: str, n: int) -> list[StoredChunk]:
    return [
        dataclasses.replace(c, anchor=f"part-{c.chunk_index}") for c in chunks(url, n, text="newer words")
    ]


def test_a_table_from_before_anchors_reads_them_empty_and_gains_them_on_the_next_write(tmp_path):
    old_table(tmp_path, "kb", {"http://x/old": 2, "http://x/again": 1})
    reader, writer = LanceDBStore(tmp_path, dim=4), LanceDBStore(tmp_path, dim=4)

    # Reading does not change the table: every chunk simply has no anchor yet.
    assert [c.anchor for c in reader.get_source("kb", "http://x/old").chunks] == ["", ""]
    assert {r.chunk.anchor for r in reader.keyword_search("kb", "older", 5)} == {""}
    assert {r.chunk.anchor for r in reader.vector_search("kb", [1.0, 1.0, 1.0, 1.0], 5)} == {""}
    assert "anchor" not in reader.db.open_table("kb_kb").schema.names

    writer.replace_page("kb", "http://x/new", anchored("http://x/new", 2))
    writer.replace_page("kb", "http://x/again", anchored("http://x/again", 1))

    assert "anchor" in reader.db.open_table("kb_kb").schema.names
    assert [c.anchor for c in reader.get_source("kb", "http://x/old").chunks] == ["", ""]
    assert [c.anchor for c in reader.get_source("kb", "http://x/new").chunks] == ["part-0", "part-1"]
    assert [c.anchor for c in reader.get_source("kb", "http://x/again").chunks] == ["part-0"]
    assert [c.anchor for c in reader.chunks_of("kb", "http://x/new", [1])] == ["part-1"]
    exported = {(c.url, c.chunk_index): c.anchor for batch in reader.export("kb") for c in batch}
    assert exported[("http://x/old", 1)] == "" and exported[("http://x/new", 1)] == "part-1"
    writer.optimize("kb")
    assert {r.chunk.anchor for r in reader.keyword_search("kb", "newer", 5)} == {"part-0", "part-1"}


def test_two_writers_opening_an_old_table_both_get_the_column(tmp_path):
    old_table(tmp_path, "kb", {"http://x/old": 1})
    first, second = LanceDBStore(tmp_path, dim=4), LanceDBStore(tmp_path, dim=4)
    stale = lancedb.connect(str(tmp_path)).open_table("kb_kb")  # still at the version it opened

    first.replace_page("kb", "http://x/a", anchored("http://x/a", 1))
    _add_missing_columns(stale, "kb")  # loses the race to the first writer: nothing left to add
    second.replace_page("kb", "http://x/b", anchored("http://x/b", 1))

    assert [c.anchor for c in first.get_source("kb", "http://x/b").chunks] == ["part-0"]


def test_compacting_between_writes_keeps_every_page_and_replaces_in_place(tmp_path):
    store = LanceDBStore(tmp_path, dim=4, compact_every_writes=3)
    reader = LanceDBStore(tmp_path, dim=4, compact_every_writes=0)
    for n in range(10):
        url = f"http://x/{n}"
        store.replace_page("kb", url, chunks(url, 2))
    store.replace_page("kb", "http://x/4", chunks("http://x/4", 1, text="new"))  # after several compactions

    table = lancedb.connect(str(tmp_path)).open_table(LanceDBStore.table_name("kb"))
    assert len(table.to_arrow().to_pylist()) == 19
    assert reader.count_chunks("kb") == 19
    assert [c.text for c in reader.get_source("kb", "http://x/4").chunks] == ["new 0"]
    assert [s.chunk_count for s in reader.list_sources("kb")] == [2, 2, 2, 2, 1, 2, 2, 2, 2, 2]


def test_fragments_stay_few_when_compacting(tmp_path):
    compacted = LanceDBStore(tmp_path / "c", dim=None, compact_every_writes=4)
    piled = LanceDBStore(tmp_path / "p", dim=None, compact_every_writes=0)
    for store in (compacted, piled):
        for n in range(12):
            url = f"http://x/{n}"
            store.replace_page("kb", url, chunks(url, 2, dim=None))

    def fragments(path):
        table = lancedb.connect(str(path)).open_table(LanceDBStore.table_name("kb"))
        return table.stats()["fragment_stats"]["num_fragments"]

    assert fragments(tmp_path / "c") < fragments(tmp_path / "p")


def test_a_reader_sees_a_replaced_page_old_or_new_never_none_nor_mixed(tmp_path):
    """Re-crawls re-index a changed page with replace_page (issue 22): one commit (merge_insert with the
    old rows' delete), so a reader in another thread reads the old chunks or the new, whole."""
    import threading

    store = LanceDBStore(tmp_path, dim=4)
    url = "http://x/a"
    versions = {"old": chunks(url, 3, text="old"), "new": chunks(url, 2, text="new")}
    store.replace_page("kb", url, versions["old"])
    done = threading.Event()
    seen: list[tuple[str, ...]] = []

    def read() -> None:
        while not done.is_set() or len(seen) < 5:
            try:
                seen.append(tuple(c.text for c in store.get_source("kb", url).chunks))
            except NotFound:
                seen.append(())  # the page missing for a moment: what must never happen

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            store.replace_page("kb", url, versions["new" if i % 2 == 0 else "old"])
    finally:
        done.set()
        reader.join()
    assert set(seen) <= {("old 0", "old 1", "old 2"), ("new 0", "new 1")}, set(seen)
