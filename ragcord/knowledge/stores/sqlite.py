"""SQLite, embedded in one file under RAGCORD_DATA_DIR: a table and an FTS5 index per knowledge base, and
exact vector search with numpy over the knowledge base's vectors, cached in each process.

Python's own sqlite3 only (it cannot load extensions here, so no sqlite-vec): nothing to install beside
numpy. Several processes share the file (workers write, the API reads) through WAL mode; every write is
one transaction, so a reader sees a page as it was or as it is, never half of it.

Layout, per knowledge base `<kb>` (its name is validated, so it is safe inside quotes):
- `kb_<kb>`: one row per chunk; `seq` only grows (AUTOINCREMENT), so a process's cache of vectors catches
  up with another's writes by reading the rows past the last `seq` it holds and dropping the seqs gone.
- `kb_<kb>_fts`: FTS5 over `text`, external content (the chunk table), kept in step by triggers.
- `knowledge_bases`: name, vector dimension (NULL: none), chunk count (kept by the triggers), and
  `incarnation`/`generation` stamped from one counter in every write transaction, so a reader can tell in
  one lookup whether its cache is current (generation) or the knowledge base was dropped and made again
  since (incarnation).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ragcord.errors import NotFound, StoreError
from ragcord.knowledge.stores.base import ScoredChunk, SourceDetail, SourceInfo, StoredChunk
from ragcord.urls import validate_kb_name

log = logging.getLogger(__name__)

_COLUMNS = ["id", "url", "title", "heading", "chunk_index", "text", "content_hash", "indexed_at", "anchor"]
_SELECT = ", ".join(f"c.{name}" for name in _COLUMNS)
_ROWS_PER_STATEMENT = 90  # a page's rows per INSERT: 900 parameters, under SQLite's 999 before 3.32

# LanceDB 0.40's default full-text index (create_fts_index("text")): the "simple" tokenizer (runs of letters
# and digits, so `lru_cache` is two words), lower case, English stemming, stop words removed, ASCII folding.
# FTS5's `porter unicode61 remove_diacritics 2` does the same but for stop words, which it indexes: they are
# left out of the query instead (a stop word then never matches, as in LanceDB). The list is the words
# LanceDB's index drops, found by indexing NLTK's and Snowball's English lists one word a row and searching
# for each (the rest of those lists it keeps: its filter runs after stemming).
_TOKENIZER = "porter unicode61 remove_diacritics 2"
STOP_WORDS = frozenset(
    """a about after again against ain all am an and are aren as at be been being below between both
    but by can couldn d did didn do doesn doing don down each few for from further had hadn has hasn
    have haven having he her here hers herself him himself his how i if in into is isn it its itself
    just ll m ma me mightn more most mustn my myself needn no nor not now o of off on or other our
    ours out over own re s same shan she should shouldn so some such t than that the their theirs
    them then there these they this those through to too under until up ve was wasn we were weren
    what when where which while who whom will with won wouldn y you your yours yourself""".split()
)
_MAX_TOKEN = 40  # LanceDB's max_token_length: longer tokens are not indexed
_TERM = re.compile(r"[^\W_]+", re.UNICODE)


def fts_terms(query: str) -> list[str]:
    """The user's words as FTS5 strings, each one quoted: no operator, column or prefix syntax reaches FTS5
    from a user. Stop words and over-long tokens are left out, as LanceDB's index leaves them out."""
    terms = dict.fromkeys(
        term for term in _TERM.findall(query.lower()) if term not in STOP_WORDS and len(term) <= _MAX_TOKEN
    )
    return [f'"{term}"' for term in terms]


def fts_query(query: str) -> str:
    """The FTS5 query of a user's words: any may match (LanceDB's default OR); "" when none is left."""
    return " OR ".join(fts_terms(query))


def _table(kb: str) -> str:
    return f'"kb_{validate_kb_name(kb)}"'


def _fts(kb: str) -> str:
    return f'"kb_{validate_kb_name(kb)}_fts"'


def _row_chunk(row: Sequence[Any], vector: list[float] | None = None) -> StoredChunk:
    values = dict(zip(_COLUMNS, row, strict=False))
    return StoredChunk(
        id=values["id"],
        url=values["url"],
        title=values["title"] or "",
        heading=values["heading"] or "",
        chunk_index=int(values["chunk_index"]),
        text=values["text"] or "",
        content_hash=values["content_hash"] or "",
        indexed_at=float(values["indexed_at"] or 0.0),
        anchor=values["anchor"] or "",
        vector=vector or [],
    )


def _missing_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


_Snapshot = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.bool_], int]


@dataclass
class _Vectors:
    """One knowledge base's vectors in this process: rows [0, n) of `matrix`, unit length, in `seq` order.

    Rows whose chunk is gone are marked dead rather than removed (a copy of the whole matrix per page
    rewritten would cost more than it frees); they are compacted away when they pass a quarter of the rows.
    Loads reserve what they read; growth beyond adds a quarter. Searches read a snapshot (arrays and n,
    taken under the lock) without holding it: a refresh only writes past n, flips `alive` flags, or builds
    new arrays.
    """

    incarnation: int
    generation: int
    matrix: npt.NDArray[np.float32]
    seqs: npt.NDArray[np.int64]
    alive: npt.NDArray[np.bool_]
    n: int = 0

    def snapshot(self) -> _Snapshot:
        return self.matrix, self.seqs, self.alive, self.n

    @property
    def last_seq(self) -> int:
        return int(self.seqs[self.n - 1]) if self.n else 0

    def append(self, seqs: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        count = len(seqs)
        if not count:
            return
        if self.n + count > len(self.seqs):
            self.reserve(max(len(self.seqs) + len(self.seqs) // 4, self.n + count, 1024))
        self.matrix[self.n : self.n + count] = _unit(vectors)
        self.seqs[self.n : self.n + count] = seqs
        self.alive[self.n : self.n + count] = True
        self.n += count

    def reserve(self, capacity: int) -> None:
        """Room for `capacity` rows (a load reserves what it will read: no copies as it grows)."""
        if capacity > len(self.seqs):
            matrix = np.empty((capacity, self.matrix.shape[1]), dtype=np.float32)
            matrix[: self.n] = self.matrix[: self.n]
            grown_seqs = np.zeros(capacity, dtype=np.int64)
            grown_seqs[: self.n] = self.seqs[: self.n]
            alive = np.zeros(capacity, dtype=np.bool_)
            alive[: self.n] = self.alive[: self.n]
            self.matrix, self.seqs, self.alive = matrix, grown_seqs, alive

    def keep_only(self, current: npt.NDArray[np.int64]) -> None:
        """Mark dead every row whose seq is not in `current` (sorted); compact when many are."""
        held = self.seqs[: self.n]
        gone = ~np.isin(held, current, assume_unique=True)
        self.alive[: self.n][gone] = False
        dead = self.n - int(self.alive[: self.n].sum())
        if dead and dead * 4 > self.n:
            keep = self.alive[: self.n]
            self.matrix = self.matrix[: self.n][keep].copy()
            self.seqs = held[keep].copy()
            self.n = len(self.seqs)
            self.alive = np.ones(self.n, dtype=np.bool_)


def _unit(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to length 1 (zero rows stay zero), so a dot product is the cosine similarity."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: npt.NDArray[np.float32] = (vectors / norms).astype(np.float32, copy=False)
    return unit


class SQLiteStore:
    """The `Store` protocol on one SQLite file (see the module's docstring for the layout)."""

    # Seconds a write waits for another process's write to finish before it fails (writes are short: one
    # page, a few ms; a long one is a knowledge base dropped, or `optimize` merging the FTS index).
    BUSY_TIMEOUT = 30.0
    LOAD_BATCH = 10_000  # vectors read per query when a cache (re)loads: bounds the bytes held twice
    # Keyword search ranks only the chunks holding a query term found in at most this share of the chunks
    # (or the rarest terms, until they hold k chunks): see _weighted_terms. bench.ask's 100k chunks (a
    # question's words match 42% of them), its 43 questions and follow-ups, one run: 0.02 ranked in 0.20x
    # the time of ranking every match, the same pool of 30 for 34/43; 0.05 0.27x, 41/43; 0.10 0.52x, 43/43;
    # 0.20 0.66x, 43/43. 0.05: most of the time saved, 95% of the pools kept.
    RARE_TERM_SHARE = 0.05
    # ... but every match is ranked while the terms' chunks (summed) are at most this many: FTS5 ranks ~1 us
    # a chunk (bench.ask: 47 ms for 42k), so ~10 ms here. The quality suite's sites (<= 2k chunks) stay
    # below: ranking only the rare terms' chunks there (forced) moved its figures by up to 1.5 points
    # (hit@1 0.686 -> 0.679, key term 0.613 -> 0.628, usable 0.474 -> 0.467) for no time to speak of.
    RANK_EVERY_MATCH_UP_TO = 10_000
    TERM_COUNTS_HELD = 10_000  # terms whose chunk counts a knowledge base's cache holds (then it starts over)

    def __init__(self, path: Path, *, dim: int | None, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self.busy_timeout = busy_timeout
        self._local = threading.local()  # a connection per thread: workers and the API run several
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # the vector caches
        self._connecting = threading.Lock()  # the list of connections (taken inside _lock: never around it)
        self._vectors: dict[str, _Vectors] = {}
        self._terms: dict[str, tuple[tuple[int, int], dict[str, int]]] = {}  # kb -> (its stamp, term counts)
        self._terms_lock = threading.Lock()  # (not _lock: a search must not wait for a vector cache's load)
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS knowledge_bases (name TEXT PRIMARY KEY, dim INTEGER, incarnation "
                "INTEGER NOT NULL, generation INTEGER NOT NULL, chunks INTEGER NOT NULL DEFAULT 0)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
            db.execute("INSERT OR IGNORE INTO counter (id, value) VALUES (0, 0)")

    # -- connections and transactions

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # isolation_level=None: no implicit transactions; _write and _snapshot begin and end their own.
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
            db.execute(
                "PRAGMA synchronous=NORMAL"
            )  # WAL stays consistent; a power cut may lose the last writes
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._local.db = db
            with self._connecting:
                self._connections.append(db)
        return db

    def _write(self) -> _Transaction:
        return _Transaction(self._db(), "BEGIN IMMEDIATE", self.path)  # the write lock now, not mid-way

    def _snapshot(self) -> _Transaction:
        return _Transaction(self._db(), "BEGIN", self.path)  # every read in it sees one version of the file

    @staticmethod
    def _bump(db: sqlite3.Connection) -> int:
        (value,) = db.execute("UPDATE counter SET value = value + 1 WHERE id = 0 RETURNING value").fetchone()
        return int(value)

    def _writable(self, db: sqlite3.Connection, kb: str) -> None:
        """Inside a write: create the knowledge base if new, check its dimension, stamp its generation."""
        row = db.execute("SELECT dim FROM knowledge_bases WHERE name = ?", (kb,)).fetchone()
        stamp = self._bump(db)
        if row is None:
            table, fts, name = _table(kb), _fts(kb), f"kb_{kb}"
            db.execute(
                f"CREATE TABLE {table} (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
                "url TEXT NOT NULL, title TEXT, heading TEXT, chunk_index INTEGER NOT NULL, text TEXT, "
                "content_hash TEXT, indexed_at REAL, anchor TEXT NOT NULL DEFAULT '', vector BLOB)"
            )
            db.execute(f'CREATE INDEX "{name}_url" ON {table} (url, chunk_index)')
            db.execute(
                f"CREATE VIRTUAL TABLE {fts} USING fts5(text, content={table}, content_rowid=seq, "
                f"tokenize='{_TOKENIZER}')"
            )
            db.execute(
                f'CREATE TRIGGER "{name}_ins" AFTER INSERT ON {table} BEGIN '
                f"INSERT INTO {fts} (rowid, text) VALUES (new.seq, new.text); "
                f"UPDATE knowledge_bases SET chunks = chunks + 1 WHERE name = '{kb}'; END"
            )
            db.execute(
                f'CREATE TRIGGER "{name}_del" AFTER DELETE ON {table} BEGIN '
                f"INSERT INTO {fts} ({fts}, rowid, text) VALUES ('delete', old.seq, old.text); "
                f"UPDATE knowledge_bases SET chunks = chunks - 1 WHERE name = '{kb}'; END"
            )
            db.execute(
                "INSERT INTO knowledge_bases (name, dim, incarnation, generation) VALUES (?, ?, ?, ?)",
                (kb, self.dim or None, stamp, stamp),
            )
            return
        (dim,) = row
        if bool(dim) != bool(self.dim):
            raise StoreError(
                f"knowledge base {kb!r} was indexed {'with' if dim else 'without'} vectors; "
                f"the configured embedder {'has none' if not self.dim else 'needs them'}: "
                "use the embedder it was built with, or delete and re-crawl it"
            )
        if dim and dim != self.dim:
            raise StoreError(
                f"knowledge base {kb!r} holds {dim}-dimension vectors but the embedder "
                f"makes {self.dim}; re-crawl it into a new knowledge base"
            )
        db.execute("UPDATE knowledge_bases SET generation = ? WHERE name = ?", (stamp, kb))

    def _exists(self, db: sqlite3.Connection, kb: str) -> bool:
        validate_kb_name(kb)
        return db.execute("SELECT 1 FROM knowledge_bases WHERE name = ?", (kb,)).fetchone() is not None

    def _read(self, kb: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read of the kb's tables; [] when the knowledge base does not exist."""
        try:
            return self._db().execute(sql.format(t=_table(kb), f=_fts(kb)), params).fetchall()
        except sqlite3.OperationalError as exc:
            if _missing_table(exc):
                return []
            raise

    # -- writes

    def _vector_blob(self, chunk: StoredChunk) -> bytes | None:
        if not self.dim:
            return None
        if len(chunk.vector) != self.dim:
            raise StoreError(
                f"chunk {chunk.chunk_index} of {chunk.url} has a {len(chunk.vector)}-dimension vector; "
                f"the store expects {self.dim}"
            )
        return np.asarray(chunk.vector, dtype="<f4").tobytes()

    def replace_page(self, kb: str, url: str, chunks: list[StoredChunk]) -> None:
        rows = {
            chunk.id: (*(getattr(chunk, name) for name in _COLUMNS), self._vector_blob(chunk))
            for chunk in chunks
        }
        table = _table(kb)
        items = list(rows.items())
        insert = f"INSERT INTO {table} ({', '.join(_COLUMNS)}, vector) VALUES "
        one = f"({', '.join('?' * 10)})"
        with self._write() as db:
            self._writable(db, kb)
            db.execute(f"DELETE FROM {table} WHERE url = ?", (url,))
            # Many rows per statement: each statement hands the GIL over, which costs dearly while a
            # worker's other threads extract pages (1 x 4 threads, 100 pages of Python's library: 0.285
            # -> 0.20 CPU-s, 8.7 -> 4.8 s, against one statement per row).
            for start in range(0, len(items), _ROWS_PER_STATEMENT):
                part = items[start : start + _ROWS_PER_STATEMENT]
                # (an id lives under its own url, but a row must never stop the page's write)
                db.execute(
                    f"DELETE FROM {table} WHERE id IN ({', '.join('?' * len(part))})", [i for i, _ in part]
                )
                db.execute(insert + ", ".join([one] * len(part)), [value for _, row in part for value in row])

    def remove_chunks(self, kb: str, url: str, indexes: list[int]) -> None:
        if not indexes:
            return
        with self._write() as db:
            if not self._exists(db, kb):
                return
            self._writable(db, kb)
            db.executemany(
                f"DELETE FROM {_table(kb)} WHERE url = ? AND chunk_index = ?",
                [(url, int(i)) for i in sorted(set(indexes))],
            )

    def delete_source(self, kb: str, url: str) -> int:
        with self._write() as db:
            if not self._exists(db, kb):
                raise NotFound(f"knowledge base {kb!r} does not exist")
            count = db.execute(f"DELETE FROM {_table(kb)} WHERE url = ?", (url,)).rowcount
            if count == 0:
                raise NotFound(f"{url} is not in knowledge base {kb!r}; ListSources shows what is")
            self._writable(db, kb)
            return int(count)

    def drop_knowledge_base(self, kb: str) -> int:
        with self._write() as db:
            if not self._exists(db, kb):
                raise NotFound(f"knowledge base {kb!r} does not exist")
            (count,) = db.execute(f"SELECT count(*) FROM {_table(kb)}").fetchone()
            db.execute(f"DROP TABLE {_fts(kb)}")
            db.execute(f"DROP TABLE {_table(kb)}")  # (its index and triggers with it)
            db.execute("DELETE FROM knowledge_bases WHERE name = ?", (kb,))
            self._bump(db)
        with self._lock:
            self._vectors.pop(kb, None)
        with self._terms_lock:
            self._terms.pop(kb, None)
        return int(count)

    def optimize(self, kb: str) -> None:
        """Merge the FTS index's segments into one (searches read one b-tree, not one per write)."""
        with self._write() as db:
            if not self._exists(db, kb):
                return
            db.execute(f"INSERT INTO {_fts(kb)} ({_fts(kb)}) VALUES ('optimize')")
        self._db().execute("PRAGMA optimize")

    # -- reads

    def list_sources(self, kb: str) -> list[SourceInfo]:
        rows = self._read(
            kb,
            "SELECT url, title, count(*), content_hash, max(indexed_at) FROM {t} GROUP BY url ORDER BY url",
        )
        return [
            SourceInfo(
                url=url, title=title or "", chunk_count=count, content_hash=hash_ or "", indexed_at=at or 0.0
            )
            for url, title, count, hash_, at in rows
        ]

    def get_source(self, kb: str, url: str) -> SourceDetail:
        rows = self._read(kb, f"SELECT {_SELECT} FROM {{t}} c WHERE url = ? ORDER BY chunk_index", (url,))
        if not rows:
            raise NotFound(f"{url} is not in knowledge base {kb!r}; ListSources shows what is")
        chunks = [_row_chunk(row) for row in rows]
        info = SourceInfo(
            url=url,
            title=chunks[0].title,
            chunk_count=len(chunks),
            content_hash=chunks[0].content_hash,
            indexed_at=max(chunk.indexed_at for chunk in chunks),
        )
        return SourceDetail(source=info, chunks=chunks)

    def count_chunks(self, kb: str) -> int:
        validate_kb_name(kb)
        # Kept by the table's triggers: a count(*) reads the whole url index (13 ms at 100k).
        row = self._db().execute("SELECT chunks FROM knowledge_bases WHERE name = ?", (kb,)).fetchone()
        return int(row[0]) if row else 0

    def keyword_search(self, kb: str, query: str, k: int, *, source: str | None = None) -> list[ScoredChunk]:
        terms = fts_terms(query)
        if not terms or k <= 0:
            return []
        rare: list[str] = terms
        if len(terms) > 1:
            terms, rare = self._weighted_terms(kb, terms, k)
        match = " OR ".join(terms)
        if source is None and len(rare) < len(terms):
            found = self._ranked_among(kb, rare, [term for term in terms if term not in rare], k)
            if len(found) >= k:
                return found
        where = "AND c.url = ?" if source else ""
        rows = self._read(
            kb,
            # bm25() is FTS5's Okapi BM25 (k1 1.2, b 0.75, as LanceDB's), negated: lower is better.
            f"SELECT {_SELECT}, -f.rank FROM {{f}} f JOIN {{t}} c ON c.seq = f.rowid "
            f"WHERE {{f}} MATCH ? {where} ORDER BY f.rank LIMIT ?",
            (match, source, k) if source else (match, k),
        )
        return [ScoredChunk(_row_chunk(row), float(row[-1])) for row in rows]

    def _ranked_among(self, kb: str, rare: list[str], common: list[str], k: int) -> list[ScoredChunk]:
        """The best `k` by the whole query's BM25 among the chunks that hold one of its rare terms.

        FTS5 computes BM25 for every chunk it ranks (~1 us each, its size read per chunk) and only for the
        chunks its query matches: so the query matches the candidates alone, in two parts whose phrases are
        the whole query's, each once (BM25 sums over the query's phrases: a phrase written twice would
        count twice). Chunks with a rare and a common term: `(rare) AND (common)`, every term ranked.
        Chunks with rare terms only: `(rare) NOT (common)`, their whole-query score (a term a chunk lacks adds
        exactly 0). The rare terms come first in both, so the scores are summed in one order.
        Before, the whole query's matches were walked with their positions (42k at 100k chunks) to rank
        the candidates among them: 0.70x the CPU (bench.ask's 100k chunks, its 43 questions, same pools).
        """
        either, common_terms = " OR ".join(rare), " OR ".join(common)
        rows = self._read(
            kb,
            "WITH both_terms (seq, score) AS (SELECT rowid, bm25({f}) FROM {f} WHERE {f} MATCH ?1 "
            "ORDER BY 2 LIMIT ?3), rare_only (seq, score) AS (SELECT rowid, bm25({f}) FROM {f} "
            "WHERE {f} MATCH ?2 ORDER BY 2 LIMIT ?3), best (seq, score) AS (SELECT seq, score "
            "FROM both_terms UNION ALL SELECT seq, score FROM rare_only ORDER BY 2 LIMIT ?3) "
            f"SELECT {_SELECT}, -b.score FROM best b JOIN {{t}} c ON c.seq = b.seq ORDER BY b.score",
            (f"({either}) AND ({common_terms})", f"({either}) NOT ({common_terms})", k),
        )
        return [ScoredChunk(_row_chunk(row), float(row[-1])) for row in rows]

    def _weighted_terms(self, kb: str, terms: list[str], k: int) -> tuple[list[str], list[str]]:
        """The terms that count in BM25 here, and the rare ones among them whose chunks are ranked.

        FTS5 gives a term found in half the chunks or more no weight (its idf, negative, is clamped to
        1e-6), yet ranks every chunk it matches: at 100k a term in every chunk cost 120 ms a search,
        counting its chunks ~6. The ranking of the rest is unchanged; when every term is that common, all
        are kept.

        The rare terms, once the terms' chunks are many (RANK_EVERY_MATCH_UP_TO): those in at most
        RARE_TERM_SHARE of the chunks, then the next rarest until they are in `k` chunks. A chunk without
        any of them holds only common terms, whose idf is low: it rarely outranks the candidates (see
        RARE_TERM_SHARE), and the ranked chunks are a few thousand, not the tens of thousands a question's
        common words match.
        """
        total, counts = self._term_counts(kb, terms)
        kept = [term for term in terms if 2 * counts[term] < total] or terms
        if sum(counts[term] for term in kept) <= self.RANK_EVERY_MATCH_UP_TO:
            return kept, kept
        rare: list[str] = []
        held = 0
        for term in sorted(kept, key=counts.__getitem__):
            if counts[term] > self.RARE_TERM_SHARE * total and held >= k:
                break
            rare.append(term)
            held += counts[term]
        return kept, rare

    def _term_counts(self, kb: str, terms: list[str]) -> tuple[int, dict[str, int]]:
        """The kb's chunk count, and the chunks holding each term: counted once per term (a term in 40% of
        100k chunks: ~1 ms) until the knowledge base's next write."""
        row = (
            self._db()
            .execute("SELECT incarnation, generation, chunks FROM knowledge_bases WHERE name = ?", (kb,))
            .fetchone()
        )
        if row is None:
            return 0, dict.fromkeys(terms, 0)
        stamp, total = (int(row[0]), int(row[1])), int(row[2])
        with self._terms_lock:
            held = self._terms.get(kb)
            if held is None or held[0] != stamp or len(held[1]) > self.TERM_COUNTS_HELD:
                held = self._terms[kb] = (stamp, {})
            counts = held[1]
            missing = [term for term in terms if term not in counts]
        for term in missing:
            rows = self._read(kb, "SELECT count(*) FROM {f} WHERE {f} MATCH ?", (term,))
            counts[term] = int(rows[0][0]) if rows else 0
        return total, {term: counts[term] for term in terms}

    def vector_search(
        self, kb: str, vector: list[float], k: int, *, source: str | None = None
    ) -> list[ScoredChunk]:
        if not vector or k <= 0:
            return []
        held = self._current_vectors(kb)
        if held is None or not held[3]:
            return []
        matrix, seqs, alive, n = held
        if len(vector) != matrix.shape[1]:
            raise StoreError(
                f"knowledge base {kb!r} holds {matrix.shape[1]}-dimension vectors; "
                f"the query has {len(vector)}: use the embedder it was built with"
            )
        query = _unit(np.asarray([vector], dtype=np.float32))[0]
        if source is None:
            rows = np.flatnonzero(alive[:n])
            scores = matrix[:n] @ query
            if len(rows) < n:
                scores = scores[rows]
        else:
            wanted = np.asarray(
                [seq for (seq,) in self._read(kb, "SELECT seq FROM {t} WHERE url = ?", (source,))],
                dtype=np.int64,
            )
            at = np.searchsorted(seqs[:n], wanted)
            inside = at < n
            at, wanted = at[inside], wanted[inside]
            rows = at[(seqs[at] == wanted) & alive[at]]
            scores = matrix[rows] @ query
        if not len(rows):
            return []
        best = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        found = {int(seqs[rows[i]]): float(scores[i]) for i in best}
        marks = ", ".join("?" * len(found))
        chunks = self._read(kb, f"SELECT c.seq, {_SELECT} FROM {{t}} c WHERE c.seq IN ({marks})", list(found))
        by_seq = {row[0]: _row_chunk(row[1:]) for row in chunks}  # a chunk rewritten meanwhile is left out
        return [ScoredChunk(by_seq[seq], score) for seq, score in found.items() if seq in by_seq]

    def _current_vectors(self, kb: str) -> _Snapshot | None:
        """The kb's vectors as of now (a snapshot: see _Vectors): one lookup when nothing changed, else the
        rows written since are read."""
        with self._lock:  # one thread refreshes; the others then find it current
            with self._snapshot() as db:
                if not self._exists(db, kb):
                    self._vectors.pop(kb, None)
                    return None
                dim, incarnation, generation = db.execute(
                    "SELECT dim, incarnation, generation FROM knowledge_bases WHERE name = ?", (kb,)
                ).fetchone()
                if not dim:
                    return None
                cache = self._vectors.get(kb)
                if cache is not None and cache.incarnation == incarnation and cache.generation == generation:
                    return cache.snapshot()
                if cache is None or cache.incarnation != incarnation:
                    empty = np.empty((0, dim), dtype=np.float32)
                    cache = _Vectors(
                        incarnation, generation, empty, np.empty(0, np.int64), np.empty(0, np.bool_)
                    )
                    (rows,) = db.execute(f"SELECT count(*) FROM {_table(kb)}").fetchone()
                    cache.reserve(rows)  # exactly: a full load grows no copies
                else:
                    # The seqs from the url index (a few MB; the table with its vectors: 250 MB at 100k),
                    # as one string numpy parses (a Python object per row would cost more than the scan).
                    (listed,) = db.execute(
                        f'SELECT group_concat(seq) FROM {_table(kb)} INDEXED BY "kb_{kb}_url"'
                    ).fetchone()
                    current = np.fromstring(listed or "", dtype=np.int64, sep=",")
                    cache.keep_only(np.sort(current))
                self._load_after(db, kb, cache, dim)
                cache.generation = generation
                self._vectors[kb] = cache
                return cache.snapshot()

    def _load_after(self, db: sqlite3.Connection, kb: str, cache: _Vectors, dim: int) -> None:
        while True:
            rows = db.execute(
                f"SELECT seq, vector FROM {_table(kb)} WHERE seq > ? AND vector IS NOT NULL "
                "ORDER BY seq LIMIT ?",
                (cache.last_seq, self.LOAD_BATCH),
            ).fetchall()
            if not rows:
                return
            seqs = np.fromiter((seq for seq, _ in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(len(rows), dim)
            cache.append(seqs, vectors.astype(np.float32))

    def chunks_of(self, kb: str, url: str, indexes: list[int]) -> list[StoredChunk]:
        return self.chunks_at(kb, {url: indexes})

    def chunks_at(self, kb: str, positions: Mapping[str, Collection[int]]) -> list[StoredChunk]:
        wanted = [(url, int(i)) for url, found in positions.items() for i in set(found)]
        if not wanted:
            return []
        # One query; each (url, index) pair is one lookup in the (url, chunk_index) index.
        pairs = ", ".join("(?, ?)" for _ in wanted)
        rows = self._read(
            kb,
            f"WITH wanted (url, chunk_index) AS (VALUES {pairs}) SELECT {_SELECT} FROM wanted w "
            "JOIN {t} c ON c.url = w.url AND c.chunk_index = w.chunk_index ORDER BY c.url, c.chunk_index",
            [value for pair in wanted for value in pair],
        )
        return [_row_chunk(row) for row in rows]

    def knowledge_bases(self) -> list[str]:
        rows = self._db().execute("SELECT name FROM knowledge_bases ORDER BY name").fetchall()
        return [name for (name,) in rows]

    def export(self, kb: str, *, batch_size: int = 1000) -> Iterator[list[StoredChunk]]:
        """Page by page (url, then position), so a copy holds few incomplete pages at a time."""
        if not self._exists(self._db(), kb):
            raise NotFound(f"knowledge base {kb!r} does not exist")
        after: tuple[str, int] = ("", -1)
        while True:
            rows = self._read(
                kb,
                f"SELECT {_SELECT}, c.vector FROM {{t}} c WHERE (c.url, c.chunk_index) > (?, ?) "
                "ORDER BY c.url, c.chunk_index LIMIT ?",
                (*after, batch_size),
            )
            if not rows:
                return
            yield [
                _row_chunk(row, np.frombuffer(row[-1], dtype="<f4").tolist() if row[-1] is not None else None)
                for row in rows
            ]
            after = (rows[-1][1], rows[-1][4])

    def close(self) -> None:
        with self._lock:
            self._vectors.clear()
        with self._terms_lock:
            self._terms.clear()
        with self._connecting:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()


class _Transaction:
    """`with` block of one transaction on a connection in autocommit mode: committed, or rolled back."""

    def __init__(self, db: sqlite3.Connection, begin: str, path: Path) -> None:
        self.db, self.begin, self.path = db, begin, path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.db.execute(self.begin)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(
                    f"the store {self.path} stayed busy (another process writing): {exc}"
                ) from exc
            raise
        return self.db

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
