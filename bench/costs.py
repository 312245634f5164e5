"""Per-page costs for capacity planning (docs/scaling.md): CPU seconds a page by stage, Redis commands a page
(ours and the Dramatiq broker's), and the bytes a chunk takes.

1. Stages alone over the fixture site's pages (fetch, extract, chunk, store in LanceDB without vectors),
   one thread, CPU time (`time.thread_time`), several passes.
2. A crawl of the same site by a Dramatiq worker in this process (2 threads, embedder none) against a
   private `redis-server` on a free port, with MONITOR counting every command by the key it names: our job
   keys, the politeness keys, the copy index, or the broker's queues. The site is served by
   `python -m http.server` in its own process, so the process CPU time is the worker's.
The embedder is not measured here (it is being replaced): docs/scaling.md states its assumption.

    .venv/bin/python -m bench.costs
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import redis

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from bench import command_line
from ragcord.bootstrap import bootstrap  # noqa: E402
from ragcord.crawls import start_crawl  # noqa: E402
from ragcord.knowledge.chunking import chunk_id, chunk_markdown, content_hash  # noqa: E402
from ragcord.knowledge.stores import StoredChunk  # noqa: E402
from ragcord.settings import Settings  # noqa: E402
from tests.harness import running_worker  # noqa: E402
from workers.actors import declare_actors  # noqa: E402
from workers.broker import build_broker  # noqa: E402
from workers.crawler import Fetcher, extract  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "tests" / "fixtures" / "site"
PASSES = 5
STAGES = ("fetch", "extract", "chunk", "store")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(command: list[str], ready: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def stages(settings: Settings, base: str, paths: list[str]) -> dict[str, float]:
    fetcher = Fetcher(settings)
    services = bootstrap(settings)
    cpu = dict.fromkeys(STAGES, 0.0)
    chunks = chunk_bytes = 0
    try:
        for _ in range(PASSES):
            for path in paths:
                t0 = time.thread_time()
                page = fetcher.fetch(base + path)
                t1 = time.thread_time()
                extracted = extract(page)
                t2 = time.thread_time()
                parts = chunk_markdown(extracted.markdown, max_words=settings.chunk_words)
                t3 = time.thread_time()
                stored = [
                    StoredChunk(
                        id=chunk_id(page.url, c.index),
                        url=page.url,
                        title=extracted.title,
                        heading=c.heading,
                        chunk_index=c.index,
                        text=c.text,
                        content_hash=content_hash(extracted.markdown),
                        indexed_at=time.time(),
                    )
                    for c in parts
                ]
                services.store.replace_page("costs", page.url, stored)
                t4 = time.thread_time()
                for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    cpu[stage] += seconds
                chunks += len(parts)
                chunk_bytes += sum(len((c.heading + c.text).encode()) for c in parts)
    finally:
        fetcher.close()
        services.close()
    pages = PASSES * len(paths)
    return {
        **{stage: seconds / pages for stage, seconds in cpu.items()},
        "pages": pages,
        "chunks_per_page": chunks / pages,
        "text_bytes_per_chunk": chunk_bytes / max(1, chunks),
    }


def classify(line: str, prefix: str) -> str:
    if f"{prefix}-dramatiq" in line or "dramatiq" in line:
        return "broker (Dramatiq's Redis broker; RabbitMQ in production)"
    if f"{prefix}:site:" in line:
        return "politeness (per site)"
    if ":chunk-owners" in line or ":page-chunks" in line:
        return "copy index (per job)"
    if f"{prefix}:job" in line:
        return "job record, events, seen-set (per job)"
    return "other"


def crawl_commands(settings: Settings, seed: str, redis_url: str) -> dict[str, object]:
    prefix = settings.key_prefix
    monitor = redis.Redis.from_url(redis_url)
    counts: collections.Counter[str] = collections.Counter()
    stop = threading.Event()

    def watch() -> None:
        with monitor.monitor() as m:
            for entry in m.listen():
                if stop.is_set():
                    return
                command = str(entry.get("command", ""))
                if not command.startswith(("PING", "INFO", "CLIENT")):
                    counts[classify(command, prefix)] += 1

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.3)
    services = bootstrap(settings)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with running_worker(settings, services, threads=2):
        broker = build_broker(settings)
        enqueue = declare_actors(broker, settings).enqueue_page
        job = start_crawl(settings, services.jobs, enqueue, url=seed, knowledge_base="costs", max_pages=500)
        while not (job := services.jobs.get(job.id)).state.terminal:
            time.sleep(0.05)
        broker.close()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    redis.Redis.from_url(redis_url).ping()  # one more command wakes the monitor so it sees `stop`
    thread.join(5)
    services.close()
    pages = job.pages_done + job.pages_skipped + job.pages_failed
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "pages": pages,
        "seconds": elapsed,
        "worker_cpu_per_page": cpu / pages,
        "commands_per_page": {kind: count / pages for kind, count in counts.most_common()},
    }


def run(plots: Path) -> tuple[str, str]:
    paths = json.loads((SITE / "manifest.json").read_text())["indexable"]
    workdir = Path(tempfile.mkdtemp(prefix="bench-costs-"))
    redis_port, site_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    settings = Settings(
        _env_file=None,
        redis_url=redis_url,
        key_prefix=f"costs{uuid.uuid4().hex[:6]}",
        data_dir=workdir / "data",
        allow_private_networks=True,
        embedder="none",
    )
    redis_server = ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    site = [sys.executable, "-m", "http.server", str(site_port), "--bind", "127.0.0.1", "-d", str(SITE)]
    try:
        with process(redis_server), process(site):
            base = f"http://127.0.0.1:{site_port}"
            s = stages(settings, base, paths)
            c = crawl_commands(
                settings.model_copy(update={"data_dir": workdir / "crawl"}), f"{base}/docs/", redis_url
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(plots, s, c)


def report(plots: Path, s: dict[str, float], c: dict[str, object]) -> tuple[str, str]:
    plots.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(list(STAGES), [s[stage] * 1000 for stage in STAGES])
    ax.set_ylabel("CPU ms a page")
    ax.set_title("Per-page CPU by stage (embedder not included)")
    fig.tight_layout()
    fig.savefig(plots / "costs_stages.png", dpi=110)
    plt.close(fig)
    commands = c["commands_per_page"]
    assert isinstance(commands, dict)
    total_cpu = sum(s[stage] for stage in STAGES)
    lines = [
        "## Per-page costs (for docs/scaling.md)",
        "",
        f"{datetime.date.today().isoformat()}, `python -m bench.costs`, the fixture site ({len(STAGES)} "
        f"stages over {s['pages']:.0f} page fetches; then a crawl of {c['pages']} pages by a Dramatiq worker "
        "of 2 threads, embedder none, on a private redis-server), shared 2-core machine.",
        "",
        "| stage | CPU ms a page |",
        "|---|---|",
        *(f"| {stage} | {s[stage] * 1000:.1f} |" for stage in STAGES),
        f"| all four, one thread | {total_cpu * 1000:.1f} |",
        f"| the worker process in the crawl (all but embedding) | {c['worker_cpu_per_page'] * 1000:.1f} |",
        "",
        f"{s['chunks_per_page']:.1f} chunks a page, {s['text_bytes_per_chunk']:.0f} bytes of text a chunk "
        "(heading and text, UTF-8).",
        "",
        "| Redis commands a page | |",
        "|---|---|",
        *(f"| {kind} | {per:.1f} |" for kind, per in commands.items()),
        f"| all | {sum(commands.values()):.1f} |",
        "",
        "![CPU by stage](bench/costs_stages.png)",
        "",
    ]
    line = (
        f"costs: cpu_ms_per_page={c['worker_cpu_per_page'] * 1000:.1f} "
        f"chunks_per_page={s['chunks_per_page']:.1f} redis_commands_per_page={sum(commands.values()):.1f}"
    )
    return "\n".join(lines), line


if __name__ == "__main__":
    command_line("python -m bench.costs", __doc__, run)
