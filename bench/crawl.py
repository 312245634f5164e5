"""Crawl throughput on the fixture site with the local embedder, and where the time goes.

Two measurements in one run (the machines are shared and noisy, so compare ratios, not seconds):
1. each pipeline stage alone over every fixture page (fetch, extract, chunk, embed, store);
2. the whole crawl through the admin API and a real Dramatiq worker (2 threads), end to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import redis

from ragcord.bootstrap import bootstrap
from ragcord.knowledge.chunking import chunk_id, chunk_markdown, content_hash
from ragcord.knowledge.embedders import LocalEmbedder
from ragcord.knowledge.stores import StoredChunk
from ragcord.settings import Settings
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api, running_worker
from tests.sitekit import FixtureSite
from workers.crawler import Fetcher, extract

SITE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "site"
REDIS_URL = os.environ.get("RAGCORD_REDIS_URL", "redis://127.0.0.1:6379/0")


def stages(settings: Settings, site: FixtureSite, repeat: int) -> dict[str, float]:
    paths = json.loads((SITE / "manifest.json").read_text())["indexable"]
    fetcher = Fetcher(settings)
    embedder = LocalEmbedder()
    t0 = time.perf_counter()
    embedder.embed(["warm up"])
    load = time.perf_counter() - t0
    services = bootstrap(settings, embedder=embedder)
    totals = dict.fromkeys(("fetch", "extract", "chunk", "embed", "store"), 0.0)
    chunks_total = 0
    for _ in range(repeat):
        for path in paths:
            t = time.perf_counter()
            page = fetcher.fetch(site.url(path))
            t_fetch = time.perf_counter()
            extracted = extract(page)
            t_extract = time.perf_counter()
            chunks = chunk_markdown(extracted.markdown, max_words=settings.chunk_words)
            t_chunk = time.perf_counter()
            vectors = embedder.embed([f"{extracted.title}\n{c.heading}\n{c.text}" for c in chunks])
            t_embed = time.perf_counter()
            services.store.replace_page(
                "bench",
                page.url,
                [
                    StoredChunk(
                        id=chunk_id(page.url, c.index),
                        url=page.url,
                        title=extracted.title,
                        heading=c.heading,
                        chunk_index=c.index,
                        text=c.text,
                        content_hash=content_hash(extracted.markdown),
                        indexed_at=time.time(),
                        vector=v,
                    )
                    for c, v in zip(chunks, vectors, strict=True)
                ],
            )
            t_store = time.perf_counter()
            totals["fetch"] += t_fetch - t
            totals["extract"] += t_extract - t_fetch
            totals["chunk"] += t_chunk - t_extract
            totals["embed"] += t_embed - t_chunk
            totals["store"] += t_store - t_embed
            chunks_total += len(chunks)
    fetcher.close()
    pages = len(paths) * repeat
    return {"pages": pages, "chunks": chunks_total, "model_load_s": load, **totals}


async def end_to_end(settings: Settings, site: FixtureSite) -> dict[str, float]:
    with running_worker(settings, threads=2) as services:
        services.embedder.embed(["warm up"])  # measure the crawl, not the model load
        async with admin_api(settings, services) as (stub, _):
            started = time.perf_counter()
            job = await stub.StartCrawl(
                pb.StartCrawlRequest(
                    url=site.url("/docs/"),
                    knowledge_base="bench-e2e",
                    max_pages=500,
                    exclude_patterns=["/special/"],
                )
            )
            final = None
            async for event in stub.WatchJob(pb.WatchJobRequest(job_id=job.id)):
                final = event.job
            elapsed = time.perf_counter() - started
    return {"pages": final.pages_done, "chunks": final.chunks_indexed, "seconds": elapsed}


def main(repeat: int = 3) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as data, FixtureSite(root=SITE) as site:
        settings = Settings(
            _env_file=None,
            redis_url=REDIS_URL,
            key_prefix=prefix,
            data_dir=Path(data),
            allow_private_networks=True,
            embedder="local",
        )
        try:
            s = stages(settings, site, repeat)
            e = asyncio.run(end_to_end(settings, site))
        finally:
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
    busy = sum(s[k] for k in ("fetch", "extract", "chunk", "embed", "store"))
    print("## Crawl of the fixture site, local embedder (all-MiniLM-L6-v2, CPU)\n")
    print(
        f"Stages alone, {s['pages']} pages ({s['chunks']} chunks), one thread; "
        f"model load {s['model_load_s']:.1f}s:\n"
    )
    print("| stage | total s | pages/s | share of time |")
    print("|---|---|---|---|")
    for stage in ("fetch", "extract", "chunk", "embed", "store"):
        print(f"| {stage} | {s[stage]:.2f} | {s['pages'] / s[stage]:.1f} | {s[stage] / busy:.0%} |")
    print(f"| all | {busy:.2f} | {s['pages'] / busy:.1f} | 100% |")
    print(f"\nEmbedding: {s['chunks'] / s['embed']:.1f} chunks/s.")
    rate = e["pages"] / e["seconds"]
    print(
        f"\nEnd to end through the admin API and one Dramatiq worker (2 threads): {e['pages']:.0f} pages, "
        f"{e['chunks']:.0f} chunks in {e['seconds']:.1f}s = {rate:.1f} pages/s "
        f"({rate / (s['pages'] / busy):.2f}x the single-thread sum of stages)."
    )
