"""Schedules fire from the worker processes, survive a restart of every process and never overlap
(issue 22, part 4): the admin API and two worker processes (`ragcord rpc`, `ragcord worker` x2) on one
Redis, a 2-second schedule, everything SIGKILLed and started again."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import SITE, TOKEN
from tests.e2e.procs import Grpcurl, Service, wait_healthy
from tests.harness import free_port
from tests.sitekit import FixtureSite

pytestmark = pytest.mark.e2e
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
KB = "scheduled"


@pytest.fixture
def processes(base_env, workdir):
    address = f"127.0.0.1:{free_port()}"
    env = {
        **base_env,
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_ADMIN_TOKEN": TOKEN,
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_WORKER_PROCESSES": "1",
        "RAGCORD_WORKER_THREADS": "2",
        "RAGCORD_WORKER_HEARTBEAT_TIMEOUT_MS": "3000",
        "RAGCORD_SCHEDULE_MIN_SECONDS": "1",
        "RAGCORD_SCHEDULE_POLL_SECONDS": "0.3",
        "RAGCORD_DATA_DIR": str(workdir / "schedule-data"),
    }
    running: list[Service] = []
    generation = [0]

    def start() -> None:
        generation[0] += 1
        n = generation[0]
        running.append(Service(["rpc"], env, workdir, workdir / f"sched-rpc-{n}.log"))
        running.extend(
            Service(["worker"], env, workdir, workdir / f"sched-worker-{n}-{i}.log") for i in range(2)
        )
        wait_healthy(Grpcurl(address, TOKEN), running[-3])

    def kill_all() -> None:
        for service in running:
            if service.alive():
                service.kill_all()
            service.log_file.close()
        running.clear()

    try:
        yield Grpcurl(address, TOKEN), start, kill_all
    finally:
        for service in running:
            service.stop()


def seconds(stamp: str) -> float:
    """An RFC 3339 timestamp as grpcurl prints it (0, 3, 6 or 9 fraction digits) in epoch seconds."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    at = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    return at + (float(f"0.{fraction}") if fraction else 0.0)


def jobs_of(grpcurl: Grpcurl) -> list[dict]:
    (listed,) = grpcurl.call("ListJobs", {"knowledge_base": KB, "page_size": 500})
    return sorted(listed.get("jobs", []), key=lambda j: seconds(j["created_at"]))


def wait_for_jobs(grpcurl: Grpcurl, count: int, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = jobs_of(grpcurl)
        if len(jobs) >= count:
            return jobs
        time.sleep(0.3)
    raise AssertionError(f"only {len(jobs)} jobs of {count} after {timeout}s: the schedule did not fire")


def test_a_schedule_fires_from_the_workers_survives_a_restart_of_everything_and_never_overlaps(processes):
    grpcurl, start, kill_all = processes
    with FixtureSite(root=SITE, delay=0.3) as site:
        start()
        (first,) = grpcurl.call(
            "StartCrawl",
            {
                "url": site.url("/docs/"),
                "knowledge_base": KB,
                "max_pages": 4,
                "exclude_patterns": ["/special/"],
            },
        )
        (schedule,) = grpcurl.call("SetSchedule", {"knowledge_base": KB, "every_seconds": 2})
        assert int(schedule["every_seconds"]) == 2
        before = wait_for_jobs(grpcurl, 3)  # the first crawl and two firings
        assert all(j["url"] == site.url("/docs/") and j["max_pages"] == 4 for j in before)

        kill_all()  # every process, SIGKILL: nothing is shut down cleanly
        start()
        after = wait_for_jobs(grpcurl, len(jobs_of(grpcurl)) + 2, timeout=180)
        (listed,) = grpcurl.call("ListSchedules", {})
        (kb,) = grpcurl.call("GetKnowledgeBase", {"name": KB})
        grpcurl.call("SetSchedule", {"knowledge_base": KB, "every_seconds": 0})
        deadline = time.monotonic() + 120
        while any(j["state"] not in TERMINAL for j in jobs_of(grpcurl)) and time.monotonic() < deadline:
            time.sleep(0.3)
        ended = jobs_of(grpcurl)
    assert first["id"] == ended[0]["id"]
    assert [s["knowledge_base"] for s in listed["schedules"]] == [KB]
    assert kb["schedule"]["every_seconds"] == "2" and kb["sources"][0]["url"] == site.url("/docs/")
    # Never two crawls of the knowledge base at once: each starts after the one before it ended.
    assert all(j["state"] in TERMINAL for j in ended), ended
    for earlier, later in zip(ended, ended[1:], strict=False):
        assert seconds(earlier["finished_at"]) <= seconds(later["created_at"]), (earlier, later)
    print(f"{len(ended)} crawls of {KB}: {len(before)} before the restart, {len(after) - len(before)} after")
