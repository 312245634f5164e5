"""Crawl + extract against peer crawlers: same site, same run, wall clock and CPU seconds.

Python's docs (Debian's python3.11-doc, ~530 pages) served on 127.0.0.1:80 by a process of its own (courlan,
under trafilatura's crawler, rejects hosts with a port; the server's CPU is counted for nobody), crawled by:
- ragcord with the embedder `none`: the admin API (in this process) and `ragcord worker`'s processes, the
  real worker path (fetch, extract, chunk, store with its full-text index, Redis, Dramatiq);
- trafilatura's own focused crawler (`trafilatura.spider.focused_crawler`, its delay between requests set to
  0 as ragcord has none on a site without Crawl-delay), then `trafilatura.extract` on each page it fetched
  (each page's response is kept as the crawler reads it: fetched once, as the others do);
- a plain Scrapy spider (bench/scrapy_spider.py) calling ragcord's extraction on each page.
Each is timed from the start of its crawl to its end (imports and worker start-up aside: ragcord is a
running service); CPU is the user + system seconds of its whole process tree over that time.

`python -m bench.peers [--max-pages N]` as root (port 80). Needs Redis at RAGCORD_REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.pipeline import REDIS_URL, REPO, _crawl, _settings, start_workers, stop_workers, tree_cpu_seconds
from ragcord.settings import Settings
from rpc.v1 import admin_pb2 as pb
from tests.harness import delete_prefixed_keys

log = logging.getLogger(__name__)

ROOT = Path("/usr/share/doc/python3.11/html")
SEED = "/index.html"
PORT = 80
DEFAULT_MAX_PAGES = 1000  # more than the site has: every contestant crawls all it finds
CONTESTANT_TIMEOUT_SECONDS = 900


def _cpu_now() -> float:
    """CPU seconds of this process and of the children it has reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -- the peers, each in a process of its own ---------------------------------------------------------------


def _trafilatura(seed: str, max_pages: int) -> dict[str, Any]:
    from trafilatura import extract, spider
    from trafilatura.downloads import fetch_url
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "SLEEP_TIME", "0")
    config.set("DEFAULT", "SSRF_PROTECTION", "off")  # a loopback site: ragcord allows it the same way
    fetched: dict[str, bytes] = {}
    process_response = spider.process_response

    def keep_response(response: Any, params: Any) -> None:
        if response is not None and response.data:
            fetched[response.url] = response.data
        process_response(response, params)

    spider.process_response = keep_response
    started, cpu = time.perf_counter(), _cpu_now()
    spider.focused_crawler(seed, max_seen_urls=max_pages, max_known_urls=100_000, config=config)
    if seed not in fetched:  # the crawler reads its start page through another path
        fetched[seed] = (fetch_url(seed, config=config) or "").encode()
    extracted = 0
    for url, body in fetched.items():
        if extract(body, url=url, config=config):
            extracted += 1
    return {
        "pages": len(fetched),
        "extracted": extracted,
        "seconds": time.perf_counter() - started,
        "cpu": _cpu_now() - cpu,
    }


def _scrapy(seed: str, max_pages: int) -> dict[str, Any]:
    from bench.scrapy_spider import crawl

    started, cpu = time.perf_counter(), _cpu_now()
    results = crawl(seed, max_pages)
    return {
        "pages": len(results),
        "extracted": sum(1 for r in results if r.get("chars")),
        "seconds": time.perf_counter() - started,
        "cpu": _cpu_now() - cpu,
    }


PEERS = {"trafilatura": _trafilatura, "scrapy": _scrapy}


def run_peer(name: str, seed: str, max_pages: int) -> dict[str, Any]:
    """`name` crawling in a process of its own: its figures, and the whole process's CPU (imports too)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-m", "bench.peers", "--peer", name, "--seed", seed, "--max-pages", str(max_pages)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CONTESTANT_TIMEOUT_SECONDS,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{name} exited {result.returncode}:\n{result.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    figures["process_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return figures


# -- ragcord --------------------------------------------------------------------------------------------


def run_ragcord(seed: str, max_pages: int, work: Path) -> dict[str, Any]:
    prefix = f"benchpeers{uuid.uuid4().hex[:8]}"
    settings = _settings("none", prefix, work / "ragcord", stage_times=False)  # as shipped: untimed
    try:
        workers = start_workers(settings, work / "workers.log")
        try:
            worker_cpu = tree_cpu_seconds(workers.pid)
            crawled = asyncio.run(_crawl(settings, seed, max_pages))
            worker_cpu = tree_cpu_seconds(workers.pid) - worker_cpu
        finally:
            stop_workers(workers)
    finally:
        delete_prefixed_keys(REDIS_URL, prefix)
    job = crawled.job
    if job.state != pb.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"the crawl ended {pb.JobState.Name(job.state)}: {job.error}")
    return {
        "pages": job.pages_done + job.pages_skipped + job.pages_failed,
        "extracted": job.pages_done,
        "seconds": crawled.seconds,
        "cpu": worker_cpu + crawled.api_cpu,
        "worker_cpu": worker_cpu,
        "api_cpu": crawled.api_cpu,
    }


# -- the run --------------------------------------------------------------------------------------------


def serve_site() -> subprocess.Popen[str]:
    """The docs on 127.0.0.1:80, from a process of its own; a clear error when the port is taken."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.peers", "--serve"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if line.strip() != "ready":
        server.kill()
        _, err = server.communicate()
        raise RuntimeError(f"cannot serve the site on 127.0.0.1:{PORT} (root is needed; is it taken?): {err}")
    return server


def _serve_forever() -> None:
    from tests.realsites.server import DocSite

    with DocSite(ROOT, port=PORT):
        print("ready", flush=True)
        while True:
            time.sleep(3600)


def report(results: dict[str, dict[str, Any]], plots: Path, command: str) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = results["ragcord"]
    rate = {n: r["pages"] / r["seconds"] for n, r in results.items()}
    per_cpu = {n: r["pages"] / max(r["cpu"], 1e-9) for n, r in results.items()}
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    defaults = Settings(_env_file=None)
    out = [
        "## Crawl + extract against peer crawlers (Python's docs on loopback)",
        "",
        f"{today}, `{command}` (as root: the site is served on 127.0.0.1:80), {os.cpu_count()} cores shared "
        "with other work. Python 3.11's documentation (Debian's python3.11-doc) served by a process of its "
        "own; each crawler crawls and extracts all it finds from /index.html, one after the other in this "
        "run. **ragcord**: embedder `none`, the admin API and `ragcord worker` (the default shape: "
        f"{defaults.worker_processes} × {defaults.worker_threads} threads), every page fetched, extracted, "
        f"chunked and stored (the default store, {defaults.store}). "
        "**trafilatura**: its focused crawler (no delay between requests) then `trafilatura.extract` on "
        "each page. **Scrapy**: a plain spider with Scrapy's defaults calling ragcord's extraction "
        "(bench/scrapy_spider.py). Seconds and CPU from the start of the crawl to its end; CPU is user + "
        "system of the whole process tree (ragcord: workers and API).",
        "",
        "| crawler | pages | with text | wall s | CPU s | pages/s | pages per CPU-s | ragcord ahead: pages/s "
        "| ragcord ahead: per CPU-s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ahead = (
            ""
            if name == "ragcord"
            else f"{rate['ragcord'] / rate[name]:.2f}× | {per_cpu['ragcord'] / per_cpu[name]:.2f}×"
        )
        out.append(
            f"| {name} | {r['pages']} | {r['extracted']} | {r['seconds']:.1f} | {r['cpu']:.1f} | "
            f"{rate[name]:.1f} | {per_cpu[name]:.1f} | {ahead or ' | '} |"
        )
    out += [
        "",
        f"ragcord's CPU: workers {ours['worker_cpu']:.1f} s, admin API and watcher {ours['api_cpu']:.1f} s. "
        "The peers' whole processes, imports included: "
        + ", ".join(f"{n} {r['process_cpu']:.1f} s" for n, r in results.items() if "process_cpu" in r)
        + ".",
        "",
    ]
    plots.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    names = list(results)
    axes[0].bar(names, [rate[n] for n in names])
    axes[0].set_title("pages/s (wall clock)")
    axes[1].bar(names, [per_cpu[n] for n in names], color="tab:orange")
    axes[1].set_title("pages per CPU-second")
    fig.tight_layout()
    fig.savefig(plots / "peers.png", dpi=110)
    plt.close(fig)
    out.append("![peers](bench/peers.png)")
    line = "peers: " + " ".join(
        f"ragcord_vs_{n} pages_s={rate['ragcord'] / rate[n]:.2f} "
        f"per_cpu={per_cpu['ragcord'] / per_cpu[n]:.2f}"
        for n in names
        if n != "ragcord"
    )
    return "\n".join(out) + "\n", line


def run(plots: Path, *, max_pages: int = DEFAULT_MAX_PAGES) -> tuple[str, str]:
    if not (ROOT / SEED.lstrip("/")).is_file():
        raise RuntimeError(f"{ROOT} is missing: apt-get install python3.11-doc")
    seed = f"http://127.0.0.1{SEED}"
    server = serve_site()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-peers-") as work:
            results = {"ragcord": run_ragcord(seed, max_pages, Path(work))}
            log.info("ragcord: %s", results["ragcord"])
            for name in PEERS:
                results[name] = run_peer(name, seed, max_pages)
                log.info("%s: %s", name, results[name])
    finally:
        server.kill()
        server.wait()
    return report(results, plots, f"python -m bench.peers --max-pages {max_pages}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--max-pages", type=int, default=DEFAULT_MAX_PAGES)
    parser.add_argument("--plots", type=Path, default=REPO / "docs" / "bench")
    parser.add_argument("--peer", choices=sorted(PEERS), help=argparse.SUPPRESS)  # one peer's own process
    parser.add_argument("--seed", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the site's own process
    args = parser.parse_args(argv)
    if args.serve:
        _serve_forever()
    elif args.peer:
        print(json.dumps(PEERS[args.peer](args.seed, args.max_pages)))
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        markdown, line = run(args.plots, max_pages=args.max_pages)
        print(markdown)
        print(line)


if __name__ == "__main__":
    main()
