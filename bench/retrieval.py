"""Retrieval and Ask latency at scale.

1. Vector retrieval at 100k chunks: exact (brute force) against the IVF_HNSW_SQ index the crawl builds
   past LanceDBStore.ANN_MIN_ROWS, with the store's own query settings: p50/p99 and recall@10.
2. Ask with the extractive answerer and the local embedder at 10k chunks: server-side p50/p99
   (memory in Redis, query embedding, hybrid search, neighbour expansion, answer composition).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import redis

from ragcord.answering.service import build_ask_service
from ragcord.bootstrap import bootstrap
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.embedders import LocalEmbedder
from ragcord.knowledge.stores import StoredChunk
from ragcord.knowledge.stores.lancedb import LanceDBStore
from ragcord.settings import Settings

REDIS_URL = os.environ.get("RAGCORD_REDIS_URL", "redis://127.0.0.1:6379/0")
SITE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "site"
WORDS = (
    "queue worker retry backoff schedule cron webhook token deploy docker cache metrics logging "
    "template upgrade plugin backup migration tenant header request limit timeout signal"
).split()


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def synthetic_chunks(n: int, dim: int, rng: np.random.Generator, clusters: int = 400) -> list[StoredChunk]:
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    vectors = centers[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = []
    for i in range(n):
        url = f"https://docs.example.com/page{i // 10}.html"
        text = " ".join(rng.choice(WORDS, 60))
        chunks.append(
            StoredChunk(
                id=chunk_id(url, i % 10),
                url=url,
                title=f"Page {i // 10}",
                heading="",
                chunk_index=i % 10,
                text=text,
                content_hash="h",
                indexed_at=0.0,
                vector=vectors[i].tolist(),
            )
        )
    return chunks


def write(store: LanceDBStore, kb: str, chunks: list[StoredChunk]) -> None:
    table = store._table(kb, create=True)
    rows = [
        {
            **{
                k: getattr(c, k)
                for k in (
                    "id",
                    "url",
                    "title",
                    "heading",
                    "chunk_index",
                    "text",
                    "content_hash",
                    "indexed_at",
                )
            },
            "vector": c.vector,
        }
        for c in chunks
    ]
    for start in range(0, len(rows), 20_000):
        table.add(pa.Table.from_pylist(rows[start : start + 20_000], schema=store._schema))


def retrieval_at_100k(queries: int = 100) -> dict[str, float]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as data:
        store = LanceDBStore(Path(data), dim=384)
        chunks = synthetic_chunks(100_000, 384, rng)
        write(store, "big", chunks)
        picks = rng.integers(0, len(chunks), queries)
        noise = 0.3 / np.sqrt(384) * rng.normal(size=(queries, 384)).astype(np.float32)  # |noise| ~ 0.3
        qs = np.array([chunks[i].vector for i in picks], dtype=np.float32) + noise
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)

        def run() -> tuple[list[float], list[list[str]]]:
            lat, results = [], []
            for q in qs:
                t = time.perf_counter()
                hits = store.vector_search("big", q.tolist(), 10)
                lat.append((time.perf_counter() - t) * 1000)
                results.append([h.chunk.id for h in hits])
            return lat, results

        exact_lat, exact = run()
        t = time.perf_counter()
        store.optimize("big")
        build_s = time.perf_counter() - t
        ann_lat, ann = run()
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ann, exact, strict=True)]))
    e50, e99 = percentiles(exact_lat)
    a50, a99 = percentiles(ann_lat)
    return {
        "exact_p50": e50,
        "exact_p99": e99,
        "ann_p50": a50,
        "ann_p99": a99,
        "recall": recall,
        "build_s": build_s,
    }


def ask_at_10k(questions: list[str]) -> dict[str, float]:
    """The fixture site's real chunks and vectors, copied under distinct URLs up to 10k chunks."""
    from tests.harness import crawl
    from tests.sitekit import FixtureSite

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            _env_file=None,
            redis_url=REDIS_URL,
            key_prefix=prefix,
            data_dir=Path(data),
            allow_private_networks=True,
            embedder="local",
        )
        services = bootstrap(settings, embedder=LocalEmbedder())
        try:
            with FixtureSite(root=SITE) as site:
                crawl(settings, services, site.url("/docs/"), "site", exclude_patterns=["/special/"])
            table = services.store._table("site", create=False)
            base = table.search().limit(None).to_arrow().to_pylist()
            copies = []
            while len(base) + len(copies) < 10_000:
                n = len(copies) // len(base) + 1
                for row in base:
                    vector = np.array(row["vector"], dtype=np.float32) + 0.02 * rng.normal(size=384)
                    vector /= np.linalg.norm(vector)
                    url = f"{row['url']}?copy={n}"
                    copies.append(
                        StoredChunk(
                            id=chunk_id(url, row["chunk_index"]),
                            url=url,
                            title=row["title"],
                            heading=row["heading"],
                            chunk_index=row["chunk_index"],
                            text=row["text"],
                            content_hash=row["content_hash"],
                            indexed_at=0.0,
                            vector=vector.tolist(),
                        )
                    )
            write(services.store, "site", copies[: 10_000 - len(base)])
            services.store.optimize("site")
            chunks = services.store.count_chunks("site")
            ask = build_ask_service(services)
            ask.ask(questions[0], knowledge_base="site")  # warm: model, tables, scripts
            latencies, parts = [], {"memory_ms": [], "search_ms": [], "answer_ms": []}
            for _ in range(3):
                for question in questions:
                    t = time.perf_counter()
                    answer = ask.ask(question, knowledge_base="site")
                    latencies.append((time.perf_counter() - t) * 1000)
                    for key in parts:
                        parts[key].append(answer.timings_ms[key])
        finally:
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
    p50, p99 = percentiles(latencies)
    result = {"chunks": chunks, "p50": p50, "p99": p99, "n": len(latencies)}
    for key, values in parts.items():
        result[key] = float(np.percentile(values, 50))
    return result


def main() -> None:
    questions = [q["question"] for q in json.loads((SITE / "questions.json").read_text())]
    r = retrieval_at_100k()
    print("\n## Vector retrieval at 100k chunks (384 dimensions, LanceDB)\n")
    print("| search | p50 ms | p99 ms | recall@10 |")
    print("|---|---|---|---|")
    print(f"| exact (brute force) | {r['exact_p50']:.1f} | {r['exact_p99']:.1f} | 1.000 |")
    print(
        f"| IVF_HNSW_SQ, nprobes 20, refine ×2 | {r['ann_p50']:.1f} | {r['ann_p99']:.1f} "
        f"| {r['recall']:.3f} |"
    )
    print(
        f"\nIndex build: {r['build_s']:.1f} s; the indexed search is "
        f"{r['exact_p50'] / r['ann_p50']:.0f}x faster at p50."
    )
    a = ask_at_10k(questions)
    print(f"\n## Ask at {a['chunks']} chunks (extractive answerer, local embedder, server side)\n")
    print(
        f"{a['n']} questions: p50 {a['p50']:.1f} ms, p99 {a['p99']:.1f} ms "
        f"(median parts: memory {a['memory_ms']:.1f} ms, embed + hybrid search + neighbours "
        f"{a['search_ms']:.1f} ms, answer {a['answer_ms']:.1f} ms)."
    )
