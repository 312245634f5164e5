"""LanceDB, embedded under RAGCORD_DATA_DIR: one table per knowledge base, full-text index + vectors."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import lancedb
import pyarrow as pa

from ragcord.errors import NotFound, StoreError
from ragcord.knowledge.stores.base import SourceDetail, SourceInfo, StoredChunk
from ragcord.urls import validate_kb_name

log = logging.getLogger(__name__)

_COLUMNS = ["id", "url", "title", "heading", "chunk_index", "text", "content_hash", "indexed_at"]


def _schema(dim: int | None) -> pa.Schema:
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("heading", pa.string()),
        pa.field("chunk_index", pa.int32()),
        pa.field("text", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("indexed_at", pa.float64()),
    ]
    if dim:
        fields.append(pa.field("vector", pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LanceDBStore:
    def __init__(self, path: Path, *, dim: int | None) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        # Always read the latest version: workers in other processes write the same tables.
        self.db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
        self._schema = _schema(dim)
        self._lock = threading.Lock()
        self._writable: dict[str, object] = {}

    @staticmethod
    def table_name(kb: str) -> str:
        return f"kb_{validate_kb_name(kb)}"

    def _table(self, kb: str, *, create: bool):
        """The kb's table (None when it does not exist and `create` is false); writers get it checked."""
        name = self.table_name(kb)
        if name in self._writable:
            return self._writable[name]
        try:
            table = self.db.open_table(name)
        except (FileNotFoundError, ValueError):
            if not create:
                return None
            with self._lock:
                table = self.db.create_table(name, schema=self._schema, exist_ok=True)
        if not create:
            return table
        vector = table.schema.field("vector") if "vector" in table.schema.names else None
        if (vector is not None) != bool(self.dim):
            raise StoreError(
                f"knowledge base {kb!r} was indexed {'with' if vector is not None else 'without'} vectors; "
                f"the configured embedder {'has none' if not self.dim else 'needs them'}: "
                "use the embedder it was built with, or delete and re-crawl it"
            )
        if vector is not None and vector.type.list_size != self.dim:
            raise StoreError(
                f"knowledge base {kb!r} holds {vector.type.list_size}-dimension vectors but the embedder "
                f"makes {self.dim}; re-crawl it into a new knowledge base"
            )
        self._writable[name] = table  # reads through it still see other processes' writes
        return table

    def replace_page(self, kb: str, url: str, chunks: list[StoredChunk]) -> None:
        table = self._table(kb, create=True)
        if not chunks:
            table.delete(f"url = {_quote(url)}")
            return
        rows = []
        for chunk in chunks:
            row = {name: getattr(chunk, name) for name in _COLUMNS}
            if self.dim:
                row["vector"] = chunk.vector
            rows.append(row)
        data = pa.Table.from_pylist(rows, schema=self._schema)
        (
            table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(f"url = {_quote(url)}")
            .execute(data)
        )

    def delete_source(self, kb: str, url: str) -> int:
        table = self._table(kb, create=False)
        if table is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        count = table.count_rows(f"url = {_quote(url)}")
        if count == 0:
            raise NotFound(f"{url} is not in knowledge base {kb!r}; ListSources shows what is")
        table.delete(f"url = {_quote(url)}")
        return count

    def _rows(self, kb: str, where: str | None = None) -> list[dict]:
        table = self._table(kb, create=False)
        if table is None:
            return []
        query = table.search().select(_COLUMNS)
        if where:
            query = query.where(where)
        return query.limit(None).to_arrow().to_pylist()

    def list_sources(self, kb: str) -> list[SourceInfo]:
        pages: dict[str, list[dict]] = defaultdict(list)
        for row in self._rows(kb):
            pages[row["url"]].append(row)
        return [
            SourceInfo(
                url=url,
                title=rows[0]["title"] or "",
                chunk_count=len(rows),
                content_hash=rows[0]["content_hash"] or "",
                indexed_at=max(r["indexed_at"] or 0.0 for r in rows),
            )
            for url, rows in sorted(pages.items())
        ]

    def get_source(self, kb: str, url: str) -> SourceDetail:
        rows = sorted(self._rows(kb, f"url = {_quote(url)}"), key=lambda r: r["chunk_index"])
        if not rows:
            raise NotFound(f"{url} is not in knowledge base {kb!r}; ListSources shows what is")
        chunks = [StoredChunk(**{name: row[name] for name in _COLUMNS}) for row in rows]
        info = SourceInfo(
            url=url,
            title=rows[0]["title"] or "",
            chunk_count=len(rows),
            content_hash=rows[0]["content_hash"] or "",
            indexed_at=max(r["indexed_at"] or 0.0 for r in rows),
        )
        return SourceDetail(source=info, chunks=chunks)

    def count_chunks(self, kb: str) -> int:
        table = self._table(kb, create=False)
        return 0 if table is None else table.count_rows()

    def optimize(self, kb: str) -> None:
        table = self._table(kb, create=False)
        if table is None:
            return
        table.create_fts_index("text", replace=True)
        table.optimize()
