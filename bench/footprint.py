"""Memory and start-up of `ragcord serve` as a new user meets it: the whole process tree, idle and crawling.

For each worker shape (processes x threads) in one run: start the real `ragcord serve` (local embedder,
LanceDB, its own Redis key prefix and data folder), time the line that says it is ready, sample the RSS of
every process of its tree twice a second, crawl Python's documentation (Debian's python3-doc, served on
loopback) through the admin API, keep sampling for a while after the crawl, then stop it. Reported: time to
ready, the tree's RSS idle, at its peak while crawling and after the crawl, pages/s, and a plot of the
tree's RSS over time. Also the size of the virtualenv's runtime packages.

`python -m bench.footprint [--pages N] [--shapes 1x4,2x2]` prints the section and its summary line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# "After" is read once the idle embedder has been dropped (the default embed_idle_unload_seconds, 60 s,
# plus the unloader's check interval, 15 s, and some slack).
AFTER_SECONDS = 90.0
# The whole-manual pages (contents.html: 2.5 MB, thousands of chunks) and the indexes: a few pages that
# would dominate a short crawl's time; the memory figures are about the ordinary pages.
EXCLUDE = [r"/contents\.html$", r"/genindex", r"/py-modindex\.html$", r"/search\.html$"]


@dataclass
class Trial:
    shape: str
    ready_s: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, tree MB)
    crawl_start: float = 0.0
    crawl_end: float = 0.0
    pages: int = 0
    chunks: int = 0
    processes: dict[str, float] = field(default_factory=dict)  # peak MB by process role

    def between(self, start: float, end: float) -> list[float]:
        return [mb for t, mb in self.samples if start <= t <= end] or [0.0]

    @property
    def idle_mb(self) -> float:
        return max(self.between(self.ready_s + 1, self.crawl_start))

    @property
    def peak_mb(self) -> float:
        return max(self.between(self.crawl_start, self.crawl_end + AFTER_SECONDS))

    @property
    def after_mb(self) -> float:
        return self.between(self.crawl_end + AFTER_SECONDS - 3, self.crawl_end + AFTER_SECONDS + 1)[-1]

    @property
    def pages_per_s(self) -> float:
        return self.pages / max(self.crawl_end - self.crawl_start, 1e-9)


def tree_rss(root: int) -> dict[int, tuple[str, float]]:
    """Every live process under `root` (itself included): pid -> (command line, RSS in MB)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier.extend(children)
    out: dict[int, tuple[str, float]] = {}
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as status:
                rss = int(status.read().split("VmRSS:")[1].split()[0]) / 1024
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        out[pid] = (command, rss)
    return out


def _role(command: str, pid: int, root: int) -> str:
    if pid == root:
        return "serve (API)"
    if "dramatiq" in command:
        return "worker" if "workers.entry" in command and "--processes" in command else "dramatiq"
    if "redis-server" in command:
        return "redis"
    return "other"


def python_docs_root() -> Path:
    from tests.realsites.catalog import SITES
    from tests.realsites.install import install

    site = SITES.by_name("sphinx-python")
    install([site])
    root = site.root()
    assert root is not None
    return root


def trial(shape: str, seed: str, pages: int) -> Trial:
    import grpc

    from rpc.v1 import admin_pb2 as pb
    from rpc.v1 import admin_pb2_grpc as pb_grpc
    from tests.harness import free_port

    processes, threads = (int(n) for n in shape.split("x"))
    data = Path(tempfile.mkdtemp(prefix="ragcord-footprint-"))
    prefix = f"benchfp{uuid.uuid4().hex[:8]}"
    address = f"127.0.0.1:{free_port()}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAGCORD_") and k != "DISCORD_TOKEN"},
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_DATA_DIR": str(data),
        "RAGCORD_KEY_PREFIX": prefix,
        "RAGCORD_ALLOW_PRIVATE_NETWORKS": "true",
        "RAGCORD_WORKER_PROCESSES": str(processes),
        "RAGCORD_WORKER_THREADS": str(threads),
        "RAGCORD_WORKER_METRICS_PORT": "0",
        "RAGCORD_METRICS_ADDRESS": "",
        "RAGCORD_REDIS_URL": os.environ.get("RAGCORD_REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    log_path = data / "serve.log"
    result = Trial(shape)
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        serve = subprocess.Popen(
            [str(Path(sys.executable).with_name("ragcord")), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data,
            start_new_session=True,
        )
    stop_sampling = threading.Event()
    peaks: dict[str, float] = {}

    def sample() -> None:
        while not stop_sampling.is_set():
            procs = tree_rss(serve.pid)
            result.samples.append((time.perf_counter() - started, sum(rss for _, rss in procs.values())))
            for pid, (command, rss) in procs.items():
                role = _role(command, pid, serve.pid)
                peaks[role] = max(peaks.get(role, 0.0), rss)
            stop_sampling.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        while "ready: admin API" not in log_path.read_text(errors="replace"):
            if serve.poll() is not None:
                raise RuntimeError(f"ragcord serve exited:\n{log_path.read_text(errors='replace')[-3000:]}")
            if time.perf_counter() - started > 300:
                raise TimeoutError("ragcord serve was not ready after 300 s")
            time.sleep(0.05)
        result.ready_s = time.perf_counter() - started
        time.sleep(5)  # idle
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.AdminServiceStub(channel)
            result.crawl_start = time.perf_counter() - started
            request = pb.StartCrawlRequest(
                url=seed, knowledge_base="footprint", max_pages=pages, exclude_patterns=EXCLUDE
            )
            job = stub.StartCrawl(request)
            final = None
            for event in stub.WatchJob(pb.WatchJobRequest(job_id=job.id)):
                final = event.job
            result.crawl_end = time.perf_counter() - started
            assert final is not None
            result.pages, result.chunks = final.pages_done, final.chunks_indexed
        time.sleep(AFTER_SECONDS)
    finally:
        stop_sampling.set()
        sampler.join()
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
        _delete_keys(env["RAGCORD_REDIS_URL"], prefix)
        shutil.rmtree(data, ignore_errors=True)
    result.processes = peaks
    return result


def _delete_keys(url: str, prefix: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        for pattern in (f"{prefix}:*", f"{prefix}-dramatiq*"):
            for key in client.scan_iter(pattern, count=1000):
                client.delete(key)


def runtime_size_mb() -> tuple[float, int]:
    """Installed size of the runtime lock's packages in this virtualenv (the dev tools left out)."""
    import importlib.metadata
    import re

    lock = (ROOT / "requirements" / "runtime.lock").read_text()
    names = {
        re.split(r"[=\s]", line)[0].lower() for line in lock.splitlines() if re.match(r"^[A-Za-z0-9]", line)
    }
    total, count = 0, 0
    for dist in importlib.metadata.distributions():
        if dist.metadata["Name"].lower().replace("_", "-") not in {n.replace("_", "-") for n in names}:
            continue
        count += 1
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    return total / 2**20, count


def run(plots: Path, *, pages: int = 300, shapes: tuple[str, ...] = ("1x4", "2x2")) -> tuple[str, str]:
    """The default shape (1 x 4) first: the summary line is its figures."""
    root = python_docs_root()
    from tests.realsites.server import DocSite

    with DocSite(root) as site:
        trials = [trial(shape, site.url("/index.html"), pages) for shape in shapes]
    size, packages = runtime_size_mb()
    _plot(plots / "footprint.png", trials)
    when = time.strftime("%Y-%m-%d")
    lines = [
        f"## Memory of `ragcord serve` while it crawls ({when}, `python -m bench.footprint`)",
        "",
        f"The whole process tree of `ragcord serve` (API, Dramatiq master, worker processes; Redis runs "
        f"apart), local embedder, crawling up to {pages} pages of Python's documentation (python3-doc on "
        "loopback; the whole-manual contents page and the indexes left out) through the admin API; RSS "
        "sampled twice a second. After: "
        f"{AFTER_SECONDS:.0f} s after the crawl ended.",
        "",
        "| shape (processes x threads) | ready s | idle MB | peak MB crawling | after MB | pages | chunks "
        "| pages/s | peak of one worker MB | API MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        lines.append(
            f"| {t.shape} | {t.ready_s:.1f} | {t.idle_mb:.0f} | {t.peak_mb:.0f} | {t.after_mb:.0f} "
            f"| {t.pages} | {t.chunks} | {t.pages_per_s:.2f} | {t.processes.get('worker', 0):.0f} "
            f"| {t.processes.get('serve (API)', 0):.0f} |"
        )
    first = trials[0]
    lines += [
        "",
        f"Runtime packages in the virtualenv: {packages} distributions, {size:.0f} MB. Targets (issue 19): "
        "idle <= 400 MB, <= 700 MB crawling, memory given back after a crawl (the idle embedder is dropped "
        "after RAGCORD_EMBED_IDLE_UNLOAD_SECONDS), ready <= 5 s.",
        "",
        "![RSS of the process tree over time](bench/footprint.png)",
    ]
    line = (
        f"footprint: shape={first.shape} ready_s={first.ready_s:.1f} idle_mb={first.idle_mb:.0f} "
        f"peak_mb={first.peak_mb:.0f} after_mb={first.after_mb:.0f} pages_per_s={first.pages_per_s:.2f} "
        f"runtime_mb={size:.0f}"
    )
    return "\n".join(lines) + "\n", line


def _plot(path: Path, trials: list[Trial]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for t in trials:
        line = ax.plot([s for s, _ in t.samples], [mb for _, mb in t.samples], label=f"{t.shape}")[0]
        ax.axvspan(t.crawl_start, t.crawl_end, color=line.get_color(), alpha=0.08)
    ax.axhline(700, color="grey", linestyle="--", linewidth=1)
    ax.text(0, 705, "700 MB target while crawling", color="grey", fontsize=8)
    ax.set_xlabel("seconds since `ragcord serve` started (shaded: crawling)")
    ax.set_ylabel("RSS of the process tree, MB")
    ax.legend(title="processes x threads")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--shapes", default="1x4,2x2", help="worker shapes, processes x threads")
    args = parser.parse_args()
    markdown, line = run(ROOT / "docs" / "bench", pages=args.pages, shapes=tuple(args.shapes.split(",")))
    print(markdown)
    print(line)


if __name__ == "__main__":
    main()
