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
    changed: int = 0  # pages whose chunks changed while they were read: copy again once crawls are done


def copy_knowledge_base(
    source: Store, target: Store, kb: str, *, progress: Progress | None = None
) -> CopyResult:
    """Copy every page of `kb` from `source` to `target`, one atomic page replacement at a time.

    Page by page with the same deterministic ids, so running it again (or after an interruption) converges
    to the same content instead of duplicating it. A page is written as soon as all its chunks have been
    read, so memory holds only pages still incomplete (few, when the source exports page by page as
    LanceDB does), not the whole knowledge base.
    """
    expected = {info.url: info.chunk_count for info in source.list_sources(kb)}
    total = sum(expected.values())
    pending: dict[str, list[StoredChunk]] = defaultdict(list)
    copied = pages = 0

    def write(url: str) -> None:
        nonlocal copied, pages
        chunks = sorted(pending.pop(url), key=lambda c: c.chunk_index)
        target.replace_page(kb, url, chunks)
        copied += len(chunks)
        pages += 1
        if progress is not None:
            progress(copied, max(total, copied))

    written: set[str] = set()
    changed: set[str] = set()  # pages a crawl rewrote while we read them
    for batch in source.export(kb):
        for chunk in batch:
            if chunk.url in written:  # more chunks than listed: keep the copy already written
                changed.add(chunk.url)
                continue
            pending[chunk.url].append(chunk)
            if len(pending[chunk.url]) == expected.get(chunk.url):
                write(chunk.url)
                written.add(chunk.url)
    changed.update(pending)
    for url in list(pending):  # fewer chunks than listed, or a new page: copy what was read
        write(url)
    target.optimize(kb)
    return CopyResult(knowledge_base=kb, pages=pages, chunks=copied, changed=len(changed))
