"""The embedded stores side by side: SQLite (sqlite3 + FTS5 + numpy exact search) against LanceDB.

For each store and size (10k and 100k chunks of 384 dimensions), in a fresh process of its own (so its RSS
is its own): write pages of PAGE_CHUNKS chunks one `replace_page` at a time as a crawl does, `optimize` as
a crawl's end does (LanceDB: FTS index, url index, and its vector index past ANN_MIN_ROWS), then time
keyword and vector searches (p50/p99; the first vector search apart: SQLite loads its cache there), recall@10
of the vector search against exact float32 search over every vector, the process's RSS after, and the size
on disk. Chunk texts are words drawn from a Zipf-shaped vocabulary, vectors random and normalised; vector
queries are stored vectors with noise (so near neighbours exist, as with real questions).
Also: the import of each store's module (time, RSS), and float16 storage for SQLite's matrix (its recall@10
against float32, its latency).

`python -m bench.store [--sizes 10000,100000]` prints the section and its summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10_000, 100_000)
DIM = 384
PAGE_CHUNKS = 50
WORDS_PER_CHUNK = 60
VOCABULARY = 20_000
QUERIES = 200
K = 10
NOISE = 0.03  # per dimension, before renormalising: a query keeps cosine ~0.6 to the vector it came from
SEED = 7


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _corpus(n: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(SEED)
    ranks = rng.zipf(1.2, size=n * WORDS_PER_CHUNK) % VOCABULARY
    words = [f"w{r}" for r in ranks]
    texts = [" ".join(words[i * WORDS_PER_CHUNK : (i + 1) * WORDS_PER_CHUNK]) for i in range(n)]
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return texts, vectors


def _queries(vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    picks = rng.integers(0, len(vectors), QUERIES)
    queries = vectors[picks] + rng.standard_normal((QUERIES, DIM), dtype=np.float32) * NOISE
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    # Two or three words of middling frequency (the words a question shares with a few pages).
    words = [" ".join(f"w{w}" for w in rng.integers(20, 2000, rng.integers(2, 4))) for _ in range(QUERIES)]
    return words, queries


def _percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def measure(kind: str, n: int, path: Path) -> dict[str, Any]:
    """One store at one size, in this process (run by `run` in a child process of its own)."""
    from ragcord.knowledge.chunking import chunk_id
    from ragcord.knowledge.stores.base import StoredChunk

    texts, vectors = _corpus(n)
    words, queries = _queries(vectors)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]  # the truth: float32 over every vector
    base_rss = _rss_mb()
    if kind == "sqlite":
        from ragcord.knowledge.stores.sqlite import SQLiteStore

        store: Any = SQLiteStore(path / "ragcord.sqlite3", dim=DIM)
    else:
        from ragcord.knowledge.stores.lancedb import LanceDBStore

        store = LanceDBStore(path / "lancedb", dim=DIM)
    started = time.perf_counter()
    for first in range(0, n, PAGE_CHUNKS):
        url = f"http://bench/page-{first // PAGE_CHUNKS}"
        store.replace_page(
            "kb",
            url,
            [
                StoredChunk(
                    id=chunk_id(url, i - first),
                    url=url,
                    title=url,
                    heading="",
                    chunk_index=i - first,
                    text=texts[i],
                    content_hash="h",
                    indexed_at=0.0,
                    vector=vectors[i].tolist(),
                )
                for i in range(first, min(n, first + PAGE_CHUNKS))
            ],
        )
    written = time.perf_counter() - started
    store.optimize("kb")
    optimized = time.perf_counter() - started - written
    index_of = {f"http://bench/page-{i // PAGE_CHUNKS}#{i % PAGE_CHUNKS}": i for i in range(n)}

    keyword_ms = []
    for query in words:
        t = time.perf_counter()
        store.keyword_search("kb", query, K)
        keyword_ms.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    store.vector_search("kb", queries[0].tolist(), K)
    first_vector_ms = (time.perf_counter() - t) * 1000
    vector_ms, hits = [], 0
    for q, query in enumerate(queries):
        t = time.perf_counter()
        found = store.vector_search("kb", query.tolist(), K)
        vector_ms.append((time.perf_counter() - t) * 1000)
        got = {index_of[f"{r.chunk.url}#{r.chunk.chunk_index}"] for r in found}
        hits += len(got & set(exact[q].tolist()))
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {
        "store": kind,
        "n": n,
        "insert_s": written,
        "optimize_s": optimized,
        "keyword": _percentiles(keyword_ms),
        "vector": _percentiles(vector_ms),
        "first_vector_ms": first_vector_ms,
        "recall": hits / (K * QUERIES),
        "rss_mb": _rss_mb(),
        "store_rss_mb": _rss_mb() - base_rss,
        "disk_mb": disk / 2**20,
    }


def float16_trial(n: int) -> dict[str, float]:
    """SQLite's matrix held as float16 instead of float32: recall@10 against float32, and latency."""
    _, vectors = _corpus(n)
    _, queries = _queries(vectors)
    half = vectors.astype(np.float16)
    hits, ms32, ms16 = 0, [], []
    for query in queries:
        t = time.perf_counter()
        exact = np.argpartition(-(vectors @ query), K)[:K]
        ms32.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        scores = np.concatenate(
            [half[i : i + 8192].astype(np.float32) @ query for i in range(0, n, 8192)]
        )  # (numpy has no fast float16 product: convert by blocks)
        approx = np.argpartition(-scores, K)[:K]
        ms16.append((time.perf_counter() - t) * 1000)
        hits += len(set(exact.tolist()) & set(approx.tolist()))
    return {
        "recall": hits / (K * len(queries)),
        "f32_p50": _percentiles(ms32)[0],
        "f16_p50": _percentiles(ms16)[0],
    }


def import_cost(module: str) -> tuple[float, float]:
    """Seconds and MB of RSS that importing `module` adds to a fresh interpreter (best of 3)."""
    probe = (
        "import time\n"
        "def rss():\n"
        "    lines = open('/proc/self/status').read().splitlines()\n"
        "    return next(int(line.split()[1]) for line in lines if line.startswith('VmRSS:')) / 1024\n"
        "before, t = rss(), time.perf_counter()\n"
        "import {m}\n"
        "print(time.perf_counter() - t, rss() - before)\n"
    )
    best = (float("inf"), 0.0)
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", probe.format(m=module)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        best = min(best, (float(out[0]), float(out[1])))
    return best


def _child(kind: str, n: int) -> dict[str, Any]:
    path = Path(tempfile.mkdtemp(prefix=f"ragcord-bench-store-{kind}-"))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.store", "--child", kind, str(n), str(path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(plots: Path, *, sizes: tuple[int, ...] = SIZES) -> tuple[str, str]:
    results = [_child(kind, n) for n in sizes for kind in ("sqlite", "lancedb")]
    half = float16_trial(max(sizes))
    imports = {
        m: import_cost(m)
        for m in ("numpy", "ragcord.knowledge.stores.sqlite", "ragcord.knowledge.stores.lancedb")
    }
    when = time.strftime("%Y-%m-%d")
    lines = [
        f"## Embedded stores: SQLite against LanceDB ({when}, `python -m bench.store`)",
        "",
        f"{DIM}-dimension random unit vectors, texts of {WORDS_PER_CHUNK} Zipf-drawn words; written in pages "
        f"of {PAGE_CHUNKS} chunks, one `replace_page` each, then `optimize`; {QUERIES} keyword queries (2-3 "
        f"words) and {QUERIES} vector queries (stored vectors plus noise); recall@{K} against exact float32 "
        "search. Each store in a fresh process: RSS is that process's after the searches (store: what the "
        "store added after the data was generated).",
        "",
        "| store | chunks | insert s | optimize s | keyword p50 / p99 ms | vector p50 / p99 ms "
        "| first vector search ms | recall@10 | RSS MB (store) | disk MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['store']} | {r['n']:,} | {r['insert_s']:.1f} | {r['optimize_s']:.1f} "
            f"| {r['keyword'][0]:.1f} / {r['keyword'][1]:.1f} | {r['vector'][0]:.1f} / {r['vector'][1]:.1f} "
            f"| {r['first_vector_ms']:.0f} | {r['recall']:.3f} | {r['rss_mb']:.0f} ({r['store_rss_mb']:.0f}) "
            f"| {r['disk_mb']:.0f} |"
        )
    lines += [
        "",
        "Import into a fresh interpreter (best of 3): "
        + "; ".join(f"`{m}` {s * 1000:.0f} ms, +{mb:.0f} MB RSS" for m, (s, mb) in imports.items())
        + ".",
        "",
        f"float16 for SQLite's matrix at {max(sizes):,}: recall@{K} {half['recall']:.3f} against float32, "
        f"p50 {half['f16_p50']:.1f} ms (converted by blocks) against {half['f32_p50']:.1f} ms for float32: "
        "half the memory, but numpy has no fast float16 product; SQLiteStore keeps float32.",
    ]
    big = {r["store"]: r for r in results if r["n"] == max(sizes)}
    sq, lance = big["sqlite"], big["lancedb"]
    summary = (
        f"store at {max(sizes) // 1000}k: sqlite vector p50 {sq['vector'][0]:.1f} ms recall "
        f"{sq['recall']:.2f}, keyword p50 {sq['keyword'][0]:.1f} ms, RSS {sq['rss_mb']:.0f} MB; lancedb "
        f"{lance['vector'][0]:.1f} ms recall {lance['recall']:.2f}, {lance['keyword'][0]:.1f} ms, "
        f"{lance['rss_mb']:.0f} MB"
    )
    return "\n".join(lines) + "\n", summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES))
    parser.add_argument("--child", nargs=3, metavar=("STORE", "N", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, n, path = args.child
        print(json.dumps(measure(kind, int(n), Path(path))))
        return
    section, summary = run(Path("bench-plots"), sizes=tuple(int(s) for s in args.sizes.split(",")))
    print(section)
    print(summary)


if __name__ == "__main__":
    main()
