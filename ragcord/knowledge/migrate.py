"""Moving a knowledge base between stores without crawling again: chunks, vectors and all."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from ragcord.knowledge.stores import Store, StoredChunk

Progress = Callable[[int, int], None]  # (chunks copied so far, total)


@dataclass(frozen=True)
class CopyResult:
    knowledge_base: str
    pages: int
    chunks: int


def copy_knowledge_base(
    source: Store, target: Store, kb: str, *, progress: Progress | None = None
) -> CopyResult:
    """Copy every page of `kb` from `source` to `target`, one atomic page replacement at a time.

    Page by page with the same deterministic ids, so running it again (or after an interruption) converges
    to the same content instead of duplicating it.
    """
    total = source.count_chunks(kb)
    pages: dict[str, list[StoredChunk]] = defaultdict(list)
    for batch in source.export(kb):
        for chunk in batch:
            pages[chunk.url].append(chunk)
    copied = 0
    for url, chunks in pages.items():
        target.replace_page(kb, url, sorted(chunks, key=lambda c: c.chunk_index))
        copied += len(chunks)
        if progress is not None:
            progress(copied, total)
    target.optimize(kb)
    return CopyResult(knowledge_base=kb, pages=len(pages), chunks=copied)
