"""Ctrl-C on `ragcord serve`: the workers finish the page they are on, then everything exits 0."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from ragcord.jobs.records import EventKind, JobState
from ragcord.jobs.store import JobStore
from tests.e2e.conftest import SITE, TOKEN
from tests.e2e.procs import Grpcurl, Service, wait_for_log, wait_healthy
from tests.harness import free_port
from tests.sitekit import FixtureSite

pytestmark = pytest.mark.e2e
GRACE_SECONDS = 20
PAGE_SECONDS = 3.0


@pytest.fixture
def serve(base_env, workdir, request):
    """Start `ragcord serve` (its own session, like a terminal's foreground job); yields a starter."""
    started: list[Service] = []

    def start(grace_seconds: float = GRACE_SECONDS) -> tuple[Grpcurl, Service]:
        address = f"127.0.0.1:{free_port()}"
        env = {
            **base_env,
            "RAGCORD_GRPC_ADDRESS": address,
            "RAGCORD_ADMIN_TOKEN": TOKEN,
            "RAGCORD_EMBEDDER": "none",
            "RAGCORD_WORKER_PROCESSES": "1",
            "RAGCORD_WORKER_THREADS": "2",
            "RAGCORD_WORKER_STOP_SECONDS": str(grace_seconds),
            "RAGCORD_FETCH_TIMEOUT_SECONDS": "15",
            "RAGCORD_DATA_DIR": str(workdir / f"stop-{request.node.name}"),
        }
        service = Service(["serve"], env, workdir, workdir / f"stop-{request.node.name}.log")
        started.append(service)
        grpcurl = Grpcurl(address, TOKEN)
        wait_healthy(grpcurl, service)
        return grpcurl, service

    yield start
    for service in started:
        service.stop()


def ctrl_c(service: Service) -> None:
    """What a terminal does on Ctrl-C: SIGINT to every process of the foreground group."""
    os.killpg(service.proc.pid, signal.SIGINT)


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_ctrl_c_mid_page_lets_the_page_finish(serve, redis_url, e2e_prefix):
    grpcurl, service = serve()
    with FixtureSite(root=SITE, delay=PAGE_SECONDS) as site:
        request = {"url": site.url("/docs/"), "knowledge_base": "stop", "max_pages": 1}
        (job,) = grpcurl.call("StartCrawl", request)
        wait_for(lambda: site.hits("/docs/") >= 1)  # the worker is waiting for the page's response
        ctrl_c(service)
        code = service.proc.wait(GRACE_SECONDS + 10)
        log = service.log.read_text(errors="replace")

    assert code == 0, service.tail()
    assert "Killing worker process" not in log
    client = redis.Redis.from_url(redis_url)
    store = JobStore(client, prefix=e2e_prefix, retention=100)
    events = store.events(job["id"])
    indexed = [e for e in events if e.kind is EventKind.PAGE_INDEXED]
    assert [e.page_url for e in indexed] == [site.url("/docs/")]
    assert store.get(job["id"]).state is JobState.SUCCEEDED
    client.close()


def test_a_started_serve_says_in_one_line_that_it_is_ready_and_where(serve):
    grpcurl, service = serve()
    wait_for_log(service, "ready: admin API on")

    ready = [
        line for line in service.log.read_text(errors="replace").splitlines() if "ready: admin API" in line
    ]
    assert len(ready) == 1
    assert grpcurl.address in ready[0] and "auth on" in ready[0]
    assert "1 worker processes x 2 threads" in ready[0] and "ragcord crawl" in ready[0]


def test_an_idle_serve_stops_without_killing_workers(serve):
    _, service = serve()
    ctrl_c(service)
    code = service.proc.wait(GRACE_SECONDS + 10)
    log = service.log.read_text(errors="replace")

    assert code == 0, service.tail()
    assert "Killing worker process" not in log
    assert "killing the workers" not in log
    assert "stopped" in log.splitlines()[-1]


def test_a_page_longer_than_the_grace_period_is_left_for_redelivery_and_reported(serve):
    grpcurl, service = serve(grace_seconds=1)
    with FixtureSite(root=SITE) as site:
        seed = site.url("/docs/special/slow.html")  # answers only when the site closes
        (job,) = grpcurl.call("StartCrawl", {"url": seed, "knowledge_base": "stop", "max_pages": 1})
        wait_for(lambda: site.hits("/docs/special/slow.html") >= 1)
        ctrl_c(service)
        code = service.proc.wait(30)
        log = service.log.read_text(errors="replace")

    assert code == 0, service.tail()
    assert f"stopped with 1 crawl(s) running ({job['id']}) and 1 pages not yet done" in log


def test_workers_do_not_outlive_a_killed_serve(serve):
    grpcurl, service = serve()
    master = next(
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and _parent(int(pid)) == service.proc.pid and "dramatiq" in _cmdline(int(pid))
    )
    os.kill(service.proc.pid, signal.SIGKILL)  # not the group: serve alone dies
    wait_for(lambda: not os.path.exists(f"/proc/{master}") or _state(master) == "Z", timeout=60)


def test_the_workers_run_at_a_lower_cpu_priority_than_the_api(serve):
    """RAGCORD_WORKER_NICE (10): a crawl's embedding takes the cores the API and the bot leave."""
    _, service = serve()
    wait_for_log(service, "ready: admin API on")
    workers = [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and "dramatiq" in _cmdline(int(pid)) and _in_tree(int(pid), service.proc.pid)
    ]

    assert len(workers) >= 2  # the master and its worker process
    assert {_nice(pid) - _nice(service.proc.pid) for pid in workers} == {10}


def _in_tree(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        pid = _parent(pid)
    return False


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
