"""The store interface every backend implements (SQLite or LanceDB embedded, Weaviate in production)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class StoredChunk:
    id: str
    url: str
    title: str
    heading: str
    chunk_index: int
    text: str
    content_hash: str
    indexed_at: float
    vector: list[float] = field(default_factory=list)
    anchor: str = ""  # fragment id of the chunk's section on its page ("" when the page gave none)


@dataclass(frozen=True)
class ScoredChunk:
    chunk: StoredChunk
    score: float  # keyword: BM25 (unbounded); vector: cosine similarity (-1..1)


@dataclass(frozen=True)
class SourceInfo:
    url: str
    title: str
    chunk_count: int
    content_hash: str
    indexed_at: float


@dataclass(frozen=True)
class SourceDetail:
    source: SourceInfo
    chunks: list[StoredChunk]

    @property
    def text(self) -> str:
        return "\n\n".join(chunk.text for chunk in self.chunks)


class Store(Protocol):
    """A knowledge base holds chunks of pages; every call names the knowledge base it works on."""

    def replace_page(self, kb: str, url: str, chunks: list[StoredChunk]) -> None:
        """Make `chunks` the page's only chunks, in one atomic write."""

    def delete_source(self, kb: str, url: str) -> int:
        """Remove the page's chunks; returns how many there were."""

    def remove_chunks(self, kb: str, url: str, indexes: list[int]) -> None:
        """Remove the page's chunks at these positions (those a whole-manual copy repeats); others stay."""

    def list_sources(self, kb: str) -> list[SourceInfo]: ...

    def get_source(self, kb: str, url: str) -> SourceDetail:
        """Raises NotFound when the page is not in the knowledge base."""

    def count_chunks(self, kb: str) -> int: ...

    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        """BM25 over chunk text, best first."""

    def vector_search(
        self, kb: str, vector: list[float], k: int, *, source: str | None = None
    ) -> list[ScoredChunk]:
        """Nearest chunks by cosine similarity, best first; [] when the store keeps no vectors."""

    def chunks_of(self, kb: str, url: str, indexes: list[int]) -> list[StoredChunk]:
        """The page's chunks at these positions (for expanding a hit with its neighbours)."""

    def chunks_at(self, kb: str, positions: Mapping[str, Collection[int]]) -> list[StoredChunk]:
        """The chunks at these positions of these pages (url -> chunk indexes), in one read; by url, index."""

    def knowledge_bases(self) -> list[str]:
        """Names of the knowledge bases this store holds."""

    def export(self, kb: str, *, batch_size: int = 1000) -> Iterator[list[StoredChunk]]:
        """Every chunk of the knowledge base, vectors included, in batches."""

    def drop_knowledge_base(self, kb: str) -> int:
        """Delete the knowledge base and every chunk in it; returns how many chunks it held."""

    def optimize(self, kb: str) -> None:
        """Compact and (re)build indexes; called when a crawl ends."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
