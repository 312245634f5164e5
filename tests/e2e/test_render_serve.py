"""`ragcord serve` crawls a Docsify site (JavaScript-rendered) through grpcurl with RENDER_AUTO, and its
worker's headless browser ends with the worker on SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path

from tests.browser_kit import WORDS, docsify_site
from tests.e2e.procs import Grpcurl, Service, wait_healthy
from tests.harness import free_port
from tests.sitekit import FixtureSite


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def browsers_under(pid: int) -> list[int]:
    """Chromium processes started by a worker under `pid` (their profile is ragcord's)."""
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            try:
                command = (Path("/proc") / str(child) / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ragcord-chromium-" in command:
                found.append(child)
            else:
                todo.append(child)
    return found


def gone(pids: list[int], within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_serve_renders_a_docsify_site_and_its_browser_ends_with_the_worker(
    chromium, docsify_js, base_env, workdir, tmp_path
):
    address = f"127.0.0.1:{free_port()}"
    env = {
        **base_env,
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_WORKER_PROCESSES": "1",
        "RAGCORD_WORKER_THREADS": "2",
        "RAGCORD_ADMIN_TOKEN": "",
    }
    (tmp_path / "other").mkdir()
    with FixtureSite(root=tmp_path / "other") as other:
        root = docsify_site(tmp_path / "site", docsify_js, other.base_url)
        with FixtureSite(root=root) as site:
            service = Service(["serve"], env, workdir, workdir / "serve-render.log")
            grpcurl = Grpcurl(address)
            try:
                wait_healthy(grpcurl, service)
                (job,) = grpcurl.call(
                    "StartCrawl", {"url": site.url("/"), "knowledge_base": "docsify", "render": "RENDER_AUTO"}
                )
                deadline = time.monotonic() + 180
                while job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                    assert time.monotonic() < deadline, f"the crawl never ended: {job}\n{service.tail()}"
                    time.sleep(0.3)
                    (job,) = grpcurl.call("GetJob", {"job_id": job["id"]})
                assert job["state"] == "JOB_STATE_SUCCEEDED", job
                assert int(job.get("pages_done", 0)) == len(WORDS), (job, service.tail())
                (sources,) = grpcurl.call("ListSources", {"knowledge_base": "docsify"})
                assert {s["url"] for s in sources["sources"]} == {site.url("/") + r for r in WORDS}
                assert other.requests == []
                browsers = browsers_under(service.proc.pid)
                assert browsers, "no headless browser under the worker"
            finally:
                code = service.stop()
            assert code == 0, service.tail()
            assert gone(browsers), f"the browser outlived its worker: {browsers}"
