"""Copying a knowledge base between stores keeps every chunk and vector (LanceDB to LanceDB here;
the same code path serves LanceDB to Weaviate)."""

from __future__ import annotations

from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.migrate import copy_knowledge_base
from ragcord.knowledge.stores import StoredChunk
from ragcord.knowledge.stores.lancedb import LanceDBStore


def page(url: str, n: int) -> list[StoredChunk]:
    return [
        StoredChunk(
            id=chunk_id(url, i),
            url=url,
            title="T",
            heading="H",
            chunk_index=i,
            text=f"{url} {i}",
            content_hash="h",
            indexed_at=1.0,
            vector=[float(i), 1.0, 0.5, 0.25],
        )
        for i in range(n)
    ]


def test_copy_moves_chunks_and_vectors_and_is_idempotent(tmp_path):
    source = LanceDBStore(tmp_path / "a", dim=4)
    target = LanceDBStore(tmp_path / "b", dim=4)
    for p in range(30):
        source.replace_page("docs", f"http://d/{p}", page(f"http://d/{p}", 1 + p % 4))
    seen = []
    result = copy_knowledge_base(
        source, target, "docs", progress=lambda done, total: seen.append((done, total))
    )
    assert result.pages == 30 and result.chunks == source.count_chunks("docs") == target.count_chunks("docs")
    assert seen[-1] == (result.chunks, result.chunks)
    assert len(seen) == 30  # written page by page as each is complete, not after reading everything
    exported = {c.id: c.vector for batch in target.export("docs") for c in batch}
    assert exported[chunk_id("http://d/3", 3)] == [3.0, 1.0, 0.5, 0.25]
    assert target.vector_search("docs", [3.0, 1.0, 0.5, 0.25], 1)[0].chunk.id == chunk_id("http://d/3", 3)
    copy_knowledge_base(source, target, "docs")  # again: the same content, nothing doubled
    assert target.count_chunks("docs") == result.chunks
    assert source.knowledge_bases() == target.knowledge_bases() == ["docs"]


class ListedEarlier(LanceDBStore):
    """A source whose page listing was taken before a crawl rewrote some pages."""

    listing: list = []

    def list_sources(self, kb):
        return self.listing


def test_pages_rewritten_during_a_copy_are_counted_and_never_cut_short(tmp_path):
    source = ListedEarlier(tmp_path / "a", dim=4)
    target = LanceDBStore(tmp_path / "b", dim=4)
    for url, n in [("http://d/grew", 2), ("http://d/shrank", 3), ("http://d/same", 2)]:
        source.replace_page("docs", url, page(url, n))
    source.listing = LanceDBStore.list_sources(source, "docs")
    source.replace_page("docs", "http://d/grew", page("http://d/grew", 4))
    source.replace_page("docs", "http://d/shrank", page("http://d/shrank", 1))

    result = copy_knowledge_base(source, target, "docs")

    assert result.changed == 2 and result.pages == 3
    assert target.get_source("docs", "http://d/same").source.chunk_count == 2
    assert target.get_source("docs", "http://d/shrank").source.chunk_count == 1
    grew = target.get_source("docs", "http://d/grew").chunks
    assert len(grew) == 2 and [c.chunk_index for c in grew] == [0, 1]  # a whole listed page, not a tail
