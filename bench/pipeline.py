"""The crawl pipeline against its ceiling, on Python's own docs (Debian's python3.11-doc) served on loopback.

In one run, for the default local embedder and for `none`:
1. the pipeline: the site crawled end to end through the real admin API (in this process) and real Dramatiq
   worker processes on Redis (`ragcord worker`'s command and environment, default settings but loopback
   allowed), each worker writing where its pages' time goes (workers/stagetimes.py);
2. the ceiling: the very pages the crawl indexed, read from disk, through extract + chunk + embed + store in
   a tight loop in one process per core (no queue, no Redis, no HTTP), started together once loaded.
The headline is pipeline / ceiling in chunks per second, both measured in this run (the machine is noisy).

`python -m bench.pipeline [--max-pages N] [--embedders local,none]`. Needs python3.11-doc
(`python -m tests.realsites.install` installs the matrix's packages) and Redis at RAGCORD_REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from ragcord.bootstrap import bootstrap
from ragcord.knowledge.chunking import chunk_id, content_hash
from ragcord.knowledge.embedders import build_embedder
from ragcord.knowledge.stores import StoredChunk, build_store
from ragcord.settings import Settings
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api, delete_prefixed_keys
from tests.realsites.catalog import SITES
from tests.realsites.server import DocSite
from workers.crawler import FetchedPage, extract
from workers.pipeline import PageCrawler, page_chunks
from workers.stagetimes import STAGES

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("RAGCORD_REDIS_URL", "redis://127.0.0.1:6379/0")
DEFAULT_MAX_PAGES = {"local": 1000, "none": 1000}  # more than the site has: the crawl goes to its end
# With the local embedder the whole site (~16k chunks, 2.5 MB contents.html among them) takes far longer than
# a benchmark may on a shared 2-core machine: its tutorial (a whole sub-site, crawled to its end) instead.
DEFAULT_SEEDS = {"local": "/tutorial/index.html", "none": "/index.html"}
READY_TIMEOUT_SECONDS = 120
CRAWL_TIMEOUT_SECONDS = 900
CEILING_STAGES = ("extract", "chunk", "embed", "store")


# -- CPU of a process tree, from /proc (psutil is not installed) -------------------------------------------


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants (with the children they reaped)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(cpu.get(pid, 0.0) for pid in tree)


# -- the pipeline -------------------------------------------------------------------------------------------


@dataclass
class CrawlRun:
    seconds: float
    pages: int  # indexed
    chunks: int
    skipped: int
    failed: int
    indexed_urls: list[str]
    worker_cpu: float  # CPU seconds of the worker processes, load included
    stages: dict[str, Any] = field(default_factory=dict)  # summed over worker processes


def _settings(embedder: str, prefix: str, data: Path, *, stage_times: bool = True) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=REDIS_URL,
        key_prefix=prefix,
        data_dir=data,
        allow_private_networks=True,
        embedder=embedder,  # type: ignore[arg-type]  # checked by the caller
        worker_metrics_port=0,
        metrics_address="",
        stage_times_dir=data / "stages" if stage_times else None,
    )


def _worker_env(settings: Settings) -> dict[str, str]:
    """`ragcord worker`'s environment for these settings: every setting the bench changes, as RAGCORD_*."""
    from cli.supervise import worker_env

    env = worker_env(settings)
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "RAGCORD_REDIS_URL": settings.redis_url,
            "RAGCORD_KEY_PREFIX": settings.key_prefix,
            "RAGCORD_DATA_DIR": str(settings.data_dir),
            "RAGCORD_ALLOW_PRIVATE_NETWORKS": "true",
            "RAGCORD_EMBEDDER": settings.embedder,
            "RAGCORD_WORKER_METRICS_PORT": "0",
            "RAGCORD_LOG_LEVEL": "WARNING",
        }
    )
    if settings.stage_times_dir is not None:
        env["RAGCORD_STAGE_TIMES_DIR"] = str(settings.stage_times_dir)
    return env


def start_workers(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`ragcord worker` (its command and environment), ready: every process loaded and consuming."""
    from cli.supervise import worker_command

    if settings.stage_times_dir is not None:
        settings.stage_times_dir.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        workers = subprocess.Popen(
            worker_command(settings),
            env=_worker_env(settings),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = redis.Redis.from_url(settings.redis_url)
    heartbeats = f"{settings.key_prefix}-dramatiq:__heartbeats__"  # one member per consuming process
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    try:
        while client.zcard(heartbeats) < settings.worker_processes:
            if workers.poll() is not None or time.monotonic() > deadline:
                stop_workers(workers)
                raise RuntimeError(f"workers did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
    finally:
        client.close()
    return workers


def stop_workers(workers: subprocess.Popen[bytes]) -> None:
    """One SIGTERM to the master (never its group: see cli/supervise.py), then a kill if it hangs."""
    if workers.poll() is None:
        workers.send_signal(signal.SIGTERM)
        try:
            workers.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(workers.pid, signal.SIGKILL)
            workers.wait()


def _sum_stage_files(directory: Path) -> dict[str, Any]:
    total: dict[str, Any] = {"messages": 0, "wall": {}, "cpu": {}, "calls": {}, "redis_commands": {}}
    for path in directory.glob("stages-*.json"):
        one = json.loads(path.read_text())
        total["messages"] += one["messages"]
        for part in ("wall", "cpu", "calls", "redis_commands"):
            for key, value in one[part].items():
                total[part][key] = total[part].get(key, 0) + value
    return total


@dataclass
class Crawled:
    seconds: float
    job: pb.Job
    events: list[pb.JobEvent]
    api_cpu: float  # this process's CPU seconds over the crawl: the admin API and the watching client


async def _crawl(settings: Settings, url: str, max_pages: int) -> Crawled:
    """StartCrawl through the admin API (in this process), then WatchJob to its end."""
    services = bootstrap(settings)
    try:
        async with admin_api(settings, services) as (stub, _):
            started, cpu = time.perf_counter(), time.process_time()
            job = await stub.StartCrawl(
                pb.StartCrawlRequest(url=url, knowledge_base="bench", max_pages=max_pages)
            )
            events = []
            final = None
            async for event in stub.WatchJob(
                pb.WatchJobRequest(job_id=job.id), timeout=CRAWL_TIMEOUT_SECONDS
            ):
                events.append(event)
                final = event.job
            elapsed, api_cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        services.close()
    assert final is not None
    return Crawled(elapsed, final, events, api_cpu)


def run_pipeline(settings: Settings, site: DocSite, seed: str, max_pages: int, log: Path) -> CrawlRun:
    workers = start_workers(settings, log)
    try:
        cpu_before = tree_cpu_seconds(workers.pid)
        crawled = asyncio.run(_crawl(settings, site.url(seed), max_pages))
        worker_cpu = tree_cpu_seconds(workers.pid) - cpu_before
    finally:
        stop_workers(workers)
    job, events, seconds = crawled.job, crawled.events, crawled.seconds
    if job.state != pb.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"the crawl ended {pb.JobState.Name(job.state)}: {job.error}")
    indexed = [e.page_url for e in events if e.kind == pb.JOB_EVENT_KIND_PAGE_INDEXED]
    assert settings.stage_times_dir is not None
    return CrawlRun(
        seconds=seconds,
        pages=job.pages_done,
        chunks=job.chunks_indexed,
        skipped=job.pages_skipped,
        failed=job.pages_failed,
        indexed_urls=indexed,
        worker_cpu=worker_cpu,
        stages=_sum_stage_files(settings.stage_times_dir),
    )


# -- the ceiling --------------------------------------------------------------------------------------------


def _ceiling_worker(settings: Settings, kb: str, pages: list[tuple[str, str]], start: Any, out: Any) -> None:
    """One core's tight loop: extract, chunk, embed, store each page; then the store's end-of-crawl index."""
    embedder = build_embedder(settings)
    embedder.load()
    embedder.embed(["warm up"])
    store = build_store(settings, dim=embedder.dim)
    bodies = [(url, Path(path).read_bytes()) for url, path in pages]
    times = dict.fromkeys(CEILING_STAGES, 0.0)
    cpu = dict.fromkeys(CEILING_STAGES, 0.0)
    chunks_total = 0
    start.wait()
    began = time.perf_counter()
    cpu_began = time.process_time()
    for url, body in bodies:
        t0, c0 = time.perf_counter(), time.process_time()
        extracted = extract(FetchedPage(url, url, 200, "text/html", body, "utf-8"))
        t1, c1 = time.perf_counter(), time.process_time()
        chunks = page_chunks(extracted, embedder, settings)
        t2, c2 = time.perf_counter(), time.process_time()
        vectors = embedder.embed([PageCrawler.embedded_text(extracted.title, c) for c in chunks])
        t3, c3 = time.perf_counter(), time.process_time()
        page_hash, now = content_hash(extracted.text), time.time()
        store.replace_page(
            kb,
            url,
            [
                StoredChunk(
                    id=chunk_id(url, c.index),
                    url=url,
                    title=extracted.title,
                    heading=c.heading,
                    anchor=c.anchor,
                    chunk_index=c.index,
                    text=c.text,
                    content_hash=page_hash,
                    indexed_at=now,
                    vector=v,
                )
                for c, v in zip(chunks, vectors, strict=True)
            ],
        )
        t4, c4 = time.perf_counter(), time.process_time()
        for stage, seconds in zip(CEILING_STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[stage] += seconds
        for stage, seconds in zip(CEILING_STAGES, (c1 - c0, c2 - c1, c3 - c2, c4 - c3), strict=True):
            cpu[stage] += seconds
        chunks_total += len(chunks)
    t, c = time.perf_counter(), time.process_time()
    store.optimize(kb)
    times["store"] += time.perf_counter() - t
    cpu["store"] += time.process_time() - c
    out.put(
        {
            "seconds": time.perf_counter() - began,
            "cpu": time.process_time() - cpu_began,
            "pages": len(bodies),
            "chunks": chunks_total,
            "stages": times,
            "stage_cpu": cpu,
        }
    )


def run_ceiling(settings: Settings, pages: list[tuple[str, str]], cores: int) -> dict[str, Any]:
    """The pages split over `cores` processes (largest first, each to the least loaded), started together."""
    shares: list[list[tuple[str, str]]] = [[] for _ in range(cores)]
    sizes = [0] * cores
    for url, path in sorted(pages, key=lambda p: -Path(p[1]).stat().st_size):
        lightest = sizes.index(min(sizes))
        shares[lightest].append((url, path))
        sizes[lightest] += Path(path).stat().st_size
    context = multiprocessing.get_context("spawn")  # a clean process, as a worker is: no threads inherited
    start = context.Barrier(cores + 1)
    out = context.Queue()
    procs = [
        context.Process(target=_ceiling_worker, args=(settings, f"ceiling{i}", share, start, out))
        for i, share in enumerate(shares)
    ]
    for proc in procs:
        proc.start()
    start.wait(timeout=READY_TIMEOUT_SECONDS)
    results = [out.get(timeout=CRAWL_TIMEOUT_SECONDS) for _ in procs]
    for proc in procs:
        proc.join(30)
    stages = {stage: sum(r["stages"][stage] for r in results) for stage in CEILING_STAGES}
    stage_cpu = {stage: sum(r["stage_cpu"][stage] for r in results) for stage in CEILING_STAGES}
    return {
        "seconds": max(r["seconds"] for r in results),  # they started together: the last to finish
        "cpu": sum(r["cpu"] for r in results),
        "pages": sum(r["pages"] for r in results),
        "chunks": sum(r["chunks"] for r in results),
        "stages": stages,
        "stage_cpu": stage_cpu,
    }


# -- one embedder, both measurements ----------------------------------------------------------------------


def _on_disk(root: Path, url: str) -> Path:
    """The file a static server serves for `url` (a directory's index.html)."""
    path = urlsplit(url).path.lstrip("/")
    return root / (path + "index.html" if not path or path.endswith("/") else path)


def measure(embedder: str, max_pages: int, root: Path, seed: str, work: Path) -> dict[str, Any]:
    prefix = f"benchpipe{uuid.uuid4().hex[:8]}"
    data = work / embedder
    settings = _settings(embedder, prefix, data)
    try:
        with DocSite(root) as site:
            crawl = run_pipeline(settings, site, seed, max_pages, work / f"workers-{embedder}.log")
            base = site.url("/")
            files = [(url, str(_on_disk(root, url))) for url in crawl.indexed_urls]
            missing = [url for url, path in files if not Path(path).is_file()]
            if missing:
                raise RuntimeError(f"indexed pages not on disk under {root}: {missing[:3]}")
            assert all(url.startswith(base) for url, _ in files)
        ceiling = run_ceiling(settings, files, settings.worker_processes)
    finally:
        delete_prefixed_keys(REDIS_URL, prefix)
    return {"embedder": embedder, "seed": seed, "crawl": crawl, "ceiling": ceiling}


def _rates(m: dict[str, Any]) -> dict[str, float]:
    crawl, ceiling = m["crawl"], m["ceiling"]
    return {
        "pipe_pages_s": crawl.pages / crawl.seconds,
        "pipe_chunks_s": crawl.chunks / crawl.seconds,
        "ceil_pages_s": ceiling["pages"] / ceiling["seconds"],
        "ceil_chunks_s": ceiling["chunks"] / ceiling["seconds"],
        "ratio_chunks": (crawl.chunks / crawl.seconds) / (ceiling["chunks"] / ceiling["seconds"]),
        "ratio_pages": (crawl.pages / crawl.seconds) / (ceiling["pages"] / ceiling["seconds"]),
        # CPU the ceiling spent on these pages over the CPU the workers spent: noise moves it far less.
        "cpu_ratio": ceiling["cpu"] / max(crawl.worker_cpu, 1e-9),
    }


def _breakdown_rows(m: dict[str, Any]) -> list[tuple[str, float, float, float, float]]:
    """(stage, wall and CPU ms per message in the pipeline, wall and CPU ms per page in the ceiling)."""
    stages = m["crawl"].stages
    messages = max(stages["messages"], 1)
    ceiling_pages = max(m["ceiling"]["pages"], 1)
    rows = []
    inside = 0.0
    ceiling_cpu = m["ceiling"]["stage_cpu"]
    for stage in STAGES:
        if stage == "message":
            continue
        wall = stages["wall"].get(stage, 0.0)
        if stage != "queue_wait":
            inside += wall
        cpu = stages["cpu"].get(stage, 0.0)
        ceil = m["ceiling"]["stages"].get(stage, 0.0) / ceiling_pages * 1000
        ceil_cpu = ceiling_cpu.get(stage, 0.0) / ceiling_pages * 1000
        rows.append((stage, wall / messages * 1000, cpu / messages * 1000, ceil, ceil_cpu))
    message_wall = stages["wall"].get("message", 0.0)
    other_cpu = stages["cpu"].get("message", 0.0) - sum(
        v for k, v in stages["cpu"].items() if k not in ("message", "queue_wait")
    )
    rows.append(
        (
            "other (actor glue, politeness waits)",
            (message_wall - inside) / messages * 1000,
            other_cpu / messages * 1000,
            0.0,
            0.0,
        )
    )
    return rows


def _plot(results: list[dict[str, Any]], plots: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots.mkdir(parents=True, exist_ok=True)
    names = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, m in zip(axes, results, strict=False):
        rows = [r for r in _breakdown_rows(m) if r[0] != "queue_wait"]
        labels = [r[0].split(" ")[0] for r in rows]
        ax.barh(labels, [r[1] for r in rows], label="pipeline, wall per message")
        ax.barh(labels, [r[2] for r in rows], height=0.4, label="pipeline, CPU per message")
        ax.set_title(f"embedder {m['embedder']}: ms per page by stage")
        ax.invert_yaxis()
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plots / "pipeline_stages.png", dpi=110)
    plt.close(fig)
    names.append("pipeline_stages.png")

    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [m["embedder"] for m in results]
    rates = [_rates(m) for m in results]
    x = range(len(results))
    ax.bar([i - 0.2 for i in x], [r["pipe_chunks_s"] for r in rates], width=0.4, label="pipeline")
    ax.bar([i + 0.2 for i in x], [r["ceil_chunks_s"] for r in rates], width=0.4, label="ceiling")
    ax.set_xticks(list(x), labels)
    ax.set_yscale("log")
    ax.set_ylabel("chunks/s")
    ax.set_title("pipeline vs ceiling (same pages, same run)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plots / "pipeline_ceiling.png", dpi=110)
    plt.close(fig)
    names.append("pipeline_ceiling.png")
    return names


_ABOUT = " ".join(
    """Python 3.11's documentation (Debian's python3.11-doc, ~530 pages) served on loopback: the whole site
    with the embedder `none`, its tutorial (a sub-site, crawled to its end) with the local embedder, whose
    whole-site crawl takes far longer than a benchmark may on this shared machine. **Pipeline**: crawled end
    to end through the admin API and `ragcord worker`'s processes (default settings, loopback allowed:
    2 processes × 2 threads, Dramatiq on Redis). **Ceiling**: the pages that crawl indexed, read from disk,
    through extract + chunk + embed + store in a tight loop, one process per core, no queue, no Redis, no
    HTTP. Both in the same run; the ratio is the figure to compare (the machine is noisy).""".split()
)


def report(results: list[dict[str, Any]], plots: Path, command: str) -> tuple[str, str]:
    names = _plot(results, plots)
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "## Crawl pipeline against its ceiling (Python's docs on loopback)",
        "",
        f"{today}, `{command}`, {os.cpu_count()} cores shared with other work. " + _ABOUT,
        "",
        "| embedder, seed | pages indexed (skipped, failed) | chunks | pipeline s | pipeline chunks/s | "
        "ceiling s | ceiling chunks/s | **pipeline / ceiling** (chunks/s) | (pages/s) | "
        "worker CPU s per page | ceiling CPU / pipeline CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines = []
    for m in results:
        c, r = m["crawl"], _rates(m)
        out.append(
            f"| {m['embedder']} from {m['seed']} | {c.pages} ({c.skipped}, {c.failed}) | {c.chunks} | "
            f"{c.seconds:.1f} | "
            f"{r['pipe_chunks_s']:.1f} | {m['ceiling']['seconds']:.1f} | {r['ceil_chunks_s']:.1f} | "
            f"**{r['ratio_chunks']:.2f}** | {r['ratio_pages']:.2f} | {c.worker_cpu / max(c.pages, 1):.3f} | "
            f"{r['cpu_ratio']:.2f} |"
        )
        lines.append(
            f"{m['embedder']} pages={c.pages} ratio={r['ratio_chunks']:.2f} "
            f"pipe_chunks_s={r['pipe_chunks_s']:.1f} ceil_chunks_s={r['ceil_chunks_s']:.1f} "
            f"cpu_ratio={r['cpu_ratio']:.2f}"
        )
    out += [
        "",
        "Where a page's time goes in the pipeline (summed over the worker threads, per message handled: "
        "indexed, skipped and put-back pages alike), beside the ceiling's per page:",
        "",
    ]
    for m in results:
        s = m["crawl"].stages
        messages = max(s["messages"], 1)
        out += [
            f"**embedder {m['embedder']}** ({s['messages']} messages):",
            "",
            "| stage | wall ms / message | thread CPU ms / message | ceiling wall ms / page | "
            "ceiling CPU ms / page |",
            "|---|---|---|---|---|",
        ]
        for stage, wall, cpu, ceil, ceil_cpu in _breakdown_rows(m):
            name = "queue wait (from due to picked up)" if stage == "queue_wait" else stage
            out.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {ceil:.1f} | {ceil_cpu:.1f} |")
        commands = sorted(s["redis_commands"].items(), key=lambda kv: -kv[1])
        per = ", ".join(f"{name} {count / messages:.1f}" for name, count in commands)
        out += ["", f"Redis commands per message (ours and Dramatiq's): {per}.", ""]
    out += [f"![{name}](bench/{name})" for name in names]
    out += [
        "",
        "Stages: queue wait is a message's time in the queue from when it was due (a page put back because "
        "its site was busy counts from its new due time); redis is the job store, politeness and copy-index "
        "calls; fetch includes robots.txt; store is the LanceDB write (and the end-of-crawl index build); "
        "enqueue sends the children's messages; other is the rest of the actor call (Dramatiq's middleware, "
        "our glue, a busy site's waits). The ceiling's store includes its own end-of-crawl index build.",
    ]
    return "\n".join(out) + "\n", "pipeline: " + " | ".join(lines)


def run(
    plots: Path,
    *,
    max_pages: dict[str, int] | None = None,
    seeds: dict[str, str] | None = None,
    embedders: tuple[str, ...] = ("local", "none"),
) -> tuple[str, str]:
    site = SITES.by_name("sphinx-python")
    root = Path("/usr/share/doc/python3.11/html")
    if not (root / site.seed.lstrip("/")).is_file():
        raise RuntimeError(
            f"{root} is missing: apt-get install python3.11-doc (or python -m tests.realsites.install)"
        )
    caps = {**DEFAULT_MAX_PAGES, **(max_pages or {})}
    starts = {**DEFAULT_SEEDS, **(seeds or {})}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        for embedder in embedders:
            results.append(measure(embedder, caps[embedder], root, starts[embedder], Path(work)))
            log.info("%s: %s", embedder, json.dumps(results[-1], default=vars))  # kept if the report fails
    command = "python -m bench.pipeline " + " ".join(
        f"--seed-{e} {starts[e]} --max-pages-{e} {caps[e]}" for e in embedders
    )
    return report(results, plots, command)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("--max-pages-local", type=int, default=DEFAULT_MAX_PAGES["local"])
    parser.add_argument("--max-pages-none", type=int, default=DEFAULT_MAX_PAGES["none"])
    parser.add_argument("--seed-local", default=DEFAULT_SEEDS["local"], help="path of the seed page")
    parser.add_argument("--seed-none", default=DEFAULT_SEEDS["none"], help="path of the seed page")
    parser.add_argument("--embedders", default="local,none", help="comma-separated: local, none")
    parser.add_argument("--plots", type=Path, default=REPO / "docs" / "bench")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    embedders = tuple(e.strip() for e in args.embedders.split(",") if e.strip())
    unknown = [e for e in embedders if e not in DEFAULT_MAX_PAGES]
    if unknown:
        parser.error(f"unknown embedder(s) {', '.join(unknown)}: use local and/or none")
    markdown, line = run(
        args.plots,
        max_pages={"local": args.max_pages_local, "none": args.max_pages_none},
        seeds={"local": args.seed_local, "none": args.seed_none},
        embedders=embedders,
    )
    print(markdown)
    print(line)


if __name__ == "__main__":
    sys.exit(main())
