"""LanceDB, embedded under RAGCORD_DATA_DIR: one table per knowledge base, full-text index + vectors."""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast, overload

import lancedb
import pyarrow as pa
from lancedb.index import BTree, HnswSq
from lancedb.query import LanceVectorQueryBuilder
from lancedb.table import Table

from ragcord.errors import NotFound, StoreError
from ragcord.knowledge.stores.base import ScoredChunk, SourceDetail, SourceInfo, StoredChunk
from ragcord.urls import validate_kb_name

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

_COLUMNS = ["id", "url", "title", "heading", "chunk_index", "text", "content_hash", "indexed_at", "anchor"]
# Columns added after the first release: tables written before them read as "" until their next write.
_ADDED_COLUMNS = [pa.field("anchor", pa.string())]


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
        *_ADDED_COLUMNS,
    ]
    if dim:
        fields.append(pa.field("vector", pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


_WORD = re.compile(r"\w+", re.UNICODE)


def _fts_terms(query: str) -> str:
    """Plain terms only: the FTS query parser must not see operators or quotes from a user."""
    return " ".join(_WORD.findall(query.lower()))


def _row_chunk(row: dict[str, Any], vector: list[float] | None = None) -> StoredChunk:
    return StoredChunk(
        **{name: row[name] for name in _COLUMNS if name != "anchor"},
        anchor=row.get("anchor") or "",
        vector=vector or [],
    )


def _columns(table: Table) -> list[str]:
    """The chunk columns this table has (an older table lacks the added ones)."""
    names = set(table.schema.names)
    return [name for name in _COLUMNS if name in names]


def _add_missing_columns(table: Table, kb: str) -> None:
    """Give a table written by an older version the columns added since (metadata only, rows read null)."""
    missing = [column for column in _ADDED_COLUMNS if column.name not in table.schema.names]
    if not missing:
        return
    log.info("adding columns %s to knowledge base %s", ", ".join(c.name for c in missing), kb)
    try:
        table.add_columns(missing)
    except (RuntimeError, ValueError):  # a commit conflict, or "Column ... already exists"
        # Another writer may have added them first; then there is nothing left to do.
        table.checkout_latest()  # type: ignore[no-untyped-call]  # (lancedb leaves it unannotated)
        if any(column.name not in table.schema.names for column in missing):
            raise


def _reopening(method: Callable[Concatenate[LanceDBStore, str, P], T]) -> Callable[..., T]:
    """Retry once with a freshly opened table when the cached one was dropped by another process."""

    @functools.wraps(method)
    def reopened(self: LanceDBStore, kb: str, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, kb, *args, **kwargs)
        except RuntimeError as exc:
            if "Not found" not in str(exc) or self._writable.pop(self.table_name(kb), None) is None:
                raise
            log.info("knowledge base %s was deleted elsewhere; opening it again", kb)
            return method(self, kb, *args, **kwargs)

    return reopened


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _index_list(indexes: Iterable[int]) -> str:
    return ", ".join(str(i) for i in sorted({int(i) for i in indexes}))


class LanceDBStore:
    # Brute force costs ~17 ms per 10k rows of 384 dimensions here; past this, crawls build an index.
    ANN_MIN_ROWS = 20_000
    # Each page write adds a fragment, and every write scans every fragment (merge_insert's join on id), so a
    # crawl's writes cost more and more: 300 pages of 20 chunks took 7.9 CPU-s written one by one, 3.8 with
    # the table compacted every 50 writes (the compactions 0.26 of it). Compacting every this many writes of
    # one process to one table keeps a write's cost flat.
    COMPACT_EVERY_WRITES = 50

    def __init__(
        self,
        path: Path,
        *,
        dim: int | None,
        ann_min_rows: int = ANN_MIN_ROWS,
        compact_every_writes: int = COMPACT_EVERY_WRITES,
    ) -> None:
        """`compact_every_writes`: 0 never compacts between writes (only `optimize`, at a crawl's end)."""
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self.ann_min_rows = ann_min_rows
        self.compact_every_writes = compact_every_writes
        self._writes: dict[str, int] = defaultdict(int)
        # Always read the latest version: workers in other processes write the same tables.
        self.db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
        self._schema = _schema(dim)
        self._lock = threading.Lock()
        self._writable: dict[str, Table] = {}

    @staticmethod
    def table_name(kb: str) -> str:
        return f"kb_{validate_kb_name(kb)}"

    @overload
    def _table(self, kb: str, *, create: Literal[True]) -> Table: ...
    @overload
    def _table(self, kb: str, *, create: Literal[False]) -> Table | None: ...

    def _table(self, kb: str, *, create: bool) -> Table | None:
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
        with self._lock:
            _add_missing_columns(table, kb)
        self._writable[name] = table  # reads through it still see other processes' writes
        return table

    @_reopening
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
        self._compact_when_due(kb, table)

    def _compact_when_due(self, kb: str, table: Table) -> None:
        """Every `compact_every_writes` writes to the table: merge its small fragments (and fold the new rows
        into the indexes it already has; a new knowledge base has none until its crawl ends)."""
        if not self.compact_every_writes:
            return
        with self._lock:
            self._writes[kb] += 1
            due = self._writes[kb] % self.compact_every_writes == 0
        if not due:
            return
        try:
            table.optimize()
        except Exception as exc:  # noqa: BLE001 - a commit conflict with another writer: the next one compacts
            log.debug("compacting knowledge base %s skipped: %r", kb, exc)

    @_reopening
    def remove_chunks(self, kb: str, url: str, indexes: list[int]) -> None:
        table = self._table(kb, create=False)
        if table is None or not indexes:
            return
        wanted = ", ".join(str(int(i)) for i in sorted(set(indexes)))
        table.delete(f"url = {_quote(url)} AND chunk_index IN ({wanted})")

    @_reopening
    def delete_source(self, kb: str, url: str) -> int:
        table = self._table(kb, create=False)
        if table is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        count = table.count_rows(f"url = {_quote(url)}")
        if count == 0:
            raise NotFound(f"{url} is not in knowledge base {kb!r}; ListSources shows what is")
        table.delete(f"url = {_quote(url)}")
        return count

    def _rows(self, kb: str, where: str | None = None) -> list[dict[str, Any]]:
        table = self._table(kb, create=False)
        if table is None:
            return []
        query = table.search().select(_columns(table))
        if where:
            query = query.where(where)
        rows: list[dict[str, Any]] = query.limit(None).to_arrow().to_pylist()  # (pyarrow is untyped)
        return rows

    @_reopening
    def list_sources(self, kb: str) -> list[SourceInfo]:
        pages: dict[str, list[dict[str, Any]]] = defaultdict(list)
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

    @_reopening
    def get_source(self, kb: str, url: str) -> SourceDetail:
        rows = sorted(self._rows(kb, f"url = {_quote(url)}"), key=lambda r: r["chunk_index"])
        if not rows:
            raise NotFound(f"{url} is not in knowledge base {kb!r}; ListSources shows what is")
        chunks = [_row_chunk(row) for row in rows]
        info = SourceInfo(
            url=url,
            title=rows[0]["title"] or "",
            chunk_count=len(rows),
            content_hash=rows[0]["content_hash"] or "",
            indexed_at=max(r["indexed_at"] or 0.0 for r in rows),
        )
        return SourceDetail(source=info, chunks=chunks)

    @_reopening
    def count_chunks(self, kb: str) -> int:
        table = self._table(kb, create=False)
        return 0 if table is None else table.count_rows()

    @_reopening
    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        table = self._table(kb, create=False)
        terms = _fts_terms(query)
        if table is None or not terms:
            return []
        for attempt in range(2):
            try:
                search = table.search(terms, query_type="fts").select([*_columns(table), "_score"]).limit(k)
                if source:
                    search = search.where(f"url = {_quote(source)}", prefilter=True)
                rows = search.to_list()
                break
            except ValueError as exc:
                if attempt or "INVERTED index" not in str(exc):
                    raise
                with self._lock:  # a table written before its first crawl ended has no index yet
                    table.create_fts_index("text", replace=True)
        return [ScoredChunk(_row_chunk(row), float(row["_score"])) for row in rows]

    @_reopening
    def vector_search(
        self, kb: str, vector: list[float], k: int, *, source: str | None = None
    ) -> list[ScoredChunk]:
        table = self._table(kb, create=False)
        if table is None or not vector or "vector" not in table.schema.names:
            return []
        # With an IVF_HNSW_SQ index: 20 partitions, then re-rank 2k candidates on the full vectors
        # (measured at 100k: recall@10 1.0 against exact search at ~5 ms; without re-ranking 0.93).
        # cast: the base Table.search is typed for every query kind; a vector query builds a vector query.
        vector_query = cast("LanceVectorQueryBuilder", table.search(vector, vector_column_name="vector"))
        search = vector_query.distance_type("cosine")
        search = search.nprobes(20).refine_factor(2).select([*_columns(table), "_distance"]).limit(k)
        if source:
            search = search.where(f"url = {_quote(source)}", prefilter=True)
        return [ScoredChunk(_row_chunk(row), 1.0 - float(row["_distance"])) for row in search.to_list()]

    @_reopening
    def chunks_of(self, kb: str, url: str, indexes: list[int]) -> list[StoredChunk]:
        if not indexes:
            return []
        wanted = ", ".join(str(int(i)) for i in sorted(set(indexes)))
        rows = self._rows(kb, f"url = {_quote(url)} AND chunk_index IN ({wanted})")
        return sorted((_row_chunk(row) for row in rows), key=lambda c: c.chunk_index)

    @_reopening
    def chunks_at(self, kb: str, positions: Mapping[str, Collection[int]]) -> list[StoredChunk]:
        # One scan (an index lookup per page with the url index) instead of one per page: ~5x less at 100k.
        pages = [
            f"(url = {_quote(url)} AND chunk_index IN ({_index_list(found)}))"
            for url, found in sorted(positions.items())
            if found
        ]
        if not pages:
            return []
        rows = self._rows(kb, " OR ".join(pages))
        return sorted((_row_chunk(row) for row in rows), key=lambda c: (c.url, c.chunk_index))

    def knowledge_bases(self) -> list[str]:
        if hasattr(self.db, "list_tables"):
            names: Iterable[str] = self.db.list_tables().tables
        else:  # (lancedb before list_tables)
            names = self.db.table_names()
        return sorted(name.removeprefix("kb_") for name in names if name.startswith("kb_"))

    def export(self, kb: str, *, batch_size: int = 1000) -> Iterator[list[StoredChunk]]:
        table = self._table(kb, create=False)
        if table is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        columns = _columns(table)
        if "vector" in table.schema.names:
            columns.append("vector")
        for batch in table.search().select(columns).limit(None).to_batches(batch_size):
            rows = batch.to_pylist()
            yield [
                _row_chunk(row, list(row["vector"]) if row.get("vector") is not None else None)
                for row in rows
            ]

    @_reopening
    def optimize(self, kb: str) -> None:
        table = self._table(kb, create=False)
        if table is None:
            return
        table.create_fts_index("text", replace=True)
        indexed = {column for index in table.list_indices() for column in index.columns}
        if "url" not in indexed:
            # Every read of a page filters on its url (neighbours of a hit, GetSource, a page's rewrite).
            table.create_index("url", config=BTree())
        if self.dim and "vector" not in indexed:
            rows = table.count_rows()
            if rows >= self.ann_min_rows:
                log.info("building the vector index of %s (%d chunks)", kb, rows)
                table.create_index(
                    "vector",
                    config=HnswSq(distance_type="cosine", num_partitions=max(1, int(math.sqrt(rows) / 2))),
                )
        table.optimize()  # compacts, and folds rows added since into the indexes

    def drop_knowledge_base(self, kb: str) -> int:
        table = self._table(kb, create=False)
        if table is None:
            raise NotFound(f"knowledge base {kb!r} does not exist")
        count = table.count_rows()
        with self._lock:
            self.db.drop_table(self.table_name(kb))
            self._writable.pop(self.table_name(kb), None)
        return count

    def close(self) -> None:
        """Nothing to release: LanceDB opens its files per operation."""
