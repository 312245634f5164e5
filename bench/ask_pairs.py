"""Ask latency before and after a change, in one run: interleaved rounds on one knowledge base.

A busy machine moves every figure of `python -m bench.ask` from one run to the next; the ratio of two
arms asked in turn, on the same knowledge base in the same process, moves far less. The arms:
- before: the SQLite store's module of another checkout (`--before /work/main`), and OpenBLAS's threads as
  they were there (`--before-blas-threads`, 0: the library's own choice, one per core);
- after: this checkout's store and settings.
Each round asks the fixture site's questions (and follow-ups) with each arm, the arms' order alternating
round by round, each round with the embedder's vector cache emptied. The knowledge base is built as
bench.ask builds it (`--data DIR` keeps it for the next run). Prints each arm's p50/p99, its stages'
medians, its CPU per ask (every thread of the process), the median of the paired ratios (same question,
same round) and the answers' identity between the arms.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.ask import (
    REDIS_URL,
    STAGES,
    Run,
    StageClock,
    TimedEmbedder,
    TimedStore,
    ask_all,
    build_knowledge_base,
    crawl_fixture_site,
    questions,
)
from ragcord import blas
from ragcord.answering.service import AskService, build_ask_service
from ragcord.bootstrap import Services, bootstrap
from ragcord.settings import Settings

log = logging.getLogger(__name__)


def store_class_of(tree: Path) -> Any:
    """The SQLiteStore class of another checkout (its module loaded under a name of its own)."""
    name = f"before_sqlite_{uuid.uuid4().hex[:6]}"
    spec = importlib.util.spec_from_file_location(
        name, tree / "ragcord" / "knowledge" / "stores" / "sqlite.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"--before {tree}: no ragcord/knowledge/stores/sqlite.py there")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module.SQLiteStore


def answers(ask: AskService, kb: str) -> list[tuple[str, list[str]]]:
    """Each question's (and follow-up's) answer text and cited URLs."""
    got = []
    for question, followup in questions():
        conversation = uuid.uuid4().hex
        for text in (question, followup):
            if text:
                answer = ask.ask(text, knowledge_base=kb, conversation_id=conversation)
                got.append((answer.text, [c.url for c in answer.citations]))
        ask.clear(conversation)
    return got


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ask_pairs", description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout whose store is the 'before' arm")
    parser.add_argument(
        "--before-blas-threads", type=int, default=0, help="OpenBLAS threads before (0: its own)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds of the questions per arm")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the knowledge base")
    parser.add_argument("--data", type=Path, help="keep the knowledge base here (reused when present)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    prefix = f"benchpairs{uuid.uuid4().hex[:8]}"
    data = args.data or Path(tempfile.mkdtemp(prefix="ragcord-bench-pairs-"))
    settings = Settings(
        _env_file=None,
        redis_url=REDIS_URL,
        key_prefix=prefix,
        data_dir=data,
        allow_private_networks=True,
        embedder="local",
    )
    services = bootstrap(settings)
    kb = f"ask{args.chunks // 1000}k"
    try:
        services.embedder.load()
        if services.store.count_chunks(kb) != args.chunks:
            base = crawl_fixture_site(settings, services, "fixture")
            seconds = build_knowledge_base(services.store, kb, base, args.chunks, seed=args.chunks)
            log.info("built %s: %d chunks in %.0f s", kb, services.store.count_chunks(kb), seconds)
        before_store = store_class_of(args.before)(services.store.path, dim=services.embedder.dim)
        # (OpenBLAS's own choice is a thread per core: set again before each of the before arm's rounds)
        before_threads = args.before_blas_threads or os.cpu_count() or 1
        arms: dict[str, tuple[Services, Callable[[], object]]] = {
            "before": (replace(services, store=before_store), lambda: blas.limit_threads(before_threads)),
            "after": (services, lambda: blas.limit_threads(settings.blas_threads)),
        }
        clock = StageClock()
        asks: dict[str, AskService] = {}
        for name, (arm, _) in arms.items():
            timed = replace(
                arm, store=TimedStore(arm.store, clock), embedder=TimedEmbedder(arm.embedder, clock)
            )
            asks[name] = build_ask_service(timed)
        identical = []
        for name in arms:
            arms[name][1]()
            services.embedder._cache.clear()  # type: ignore[attr-defined]
            identical.append(answers(asks[name], kb))
        runs = {name: Run(name, args.chunks, "extractive", "sqlite") for name in arms}
        cpu = dict.fromkeys(arms, 0.0)
        load = [os.getloadavg()[0]]
        for round_ in range(args.rounds):
            for name in list(arms) if round_ % 2 == 0 else list(arms)[::-1]:
                arms[name][1]()
                started = time.process_time()
                ask_all(asks[name], clock, kb, runs[name], 1)
                cpu[name] += time.process_time() - started
        load.append(os.getloadavg()[0])
    finally:
        services.close()
        from tests.harness import delete_prefixed_keys

        delete_prefixed_keys(REDIS_URL, prefix)
        if args.data is None:
            shutil.rmtree(data, ignore_errors=True)
    same = sum(a == b for a, b in zip(*identical, strict=True))
    print(f"{kb}, {args.rounds} rounds; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end")
    print(f"answers identical: {same}/{len(identical[0])}")
    print("| arm | p50 ms | p99 ms | CPU ms per ask | " + " | ".join(shown for _, shown in STAGES) + " |")
    print("|---" * (4 + len(STAGES)) + "|")
    for name, run in runs.items():
        stages = " | ".join(f"{run.stage(stage):.1f}" for stage, _ in STAGES)
        print(
            f"| {name} | {run.p50:.1f} | {run.p99:.1f} | {cpu[name] * 1000 / len(run.totals):.1f} "
            f"| {stages} |"
        )
    ratios = np.array(runs["after"].totals) / np.array(runs["before"].totals)
    print(
        f"after/before: p50 {runs['after'].p50 / runs['before'].p50:.2f}x, "
        f"median of the paired ratios {np.median(ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
