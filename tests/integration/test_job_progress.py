"""What an operator is told about a crawl's progress, through the real API and CLI: exactly how many pages
max_pages left behind, and that the first pages wait because workers are loading the embedding model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from cli.main import main
from ragcord.bootstrap import bootstrap
from ragcord.jobs import JobStore, PageOutcome
from ragcord.jobs.store import LOADING_MODEL
from rpc.v1 import admin_pb2 as pb
from tests.conftest import ROOT
from tests.harness import admin_api, crawl, free_port, running_worker
from tests.integration.test_cli_jobs import serving, wait_for
from tests.integration.test_eval_command import SITE
from tests.sitekit import FixtureSite
from workers.actors import declare_actors
from workers.broker import build_broker

SEED = "http://docs.example.com/docs/"


@pytest.fixture
def cli_env(make_settings, monkeypatch):
    """Settings for the server, and the CLI's environment pointing at the same Redis (as in test_cli_jobs)."""
    settings = make_settings()
    for name, value in (
        ("RAGCORD_REDIS_URL", settings.redis_url),
        ("RAGCORD_KEY_PREFIX", settings.key_prefix),
        ("RAGCORD_DATA_DIR", str(settings.data_dir)),
        ("RAGCORD_EMBEDDER", "none"),
        ("RAGCORD_ADMIN_TOKEN", ""),
        ("COLUMNS", "100"),
    ):
        monkeypatch.setenv(name, value)
    return settings


def test_links_refused_by_max_pages_are_counted_once_each(redis_client, key_prefix):
    jobs = JobStore(redis_client, prefix=key_prefix, retention=100)
    job = jobs.create(knowledge_base="docs", url=SEED, max_pages=2, max_depth=3)
    jobs.start_page(job.id, SEED)
    assert jobs.reserve_links(job.id, SEED, [SEED + "a", SEED + "b", SEED + "c"]) == [SEED + "a"]
    assert jobs.get(job.id).pages_beyond_max_pages == 2  # b and c
    # The same links seen again from another page (and a redelivery) count once; a new one counts.
    jobs.start_page(job.id, SEED + "a")
    assert jobs.reserve_links(job.id, SEED + "a", [SEED + "b", SEED + "c", SEED + "d", SEED]) == []
    assert jobs.reserve_links(job.id, SEED + "a", [SEED + "b", SEED + "d"]) == []
    assert jobs.get(job.id).pages_beyond_max_pages == 3
    # A crawl that max_pages did not cut counts nothing.
    whole = jobs.create(knowledge_base="docs", url=SEED, max_pages=5, max_depth=3)
    jobs.start_page(whole.id, SEED)
    jobs.reserve_links(whole.id, SEED, [SEED + "a", SEED + "b"])
    assert jobs.get(whole.id).pages_beyond_max_pages == 0


async def test_the_summary_says_how_many_pages_max_pages_left_and_never_more_than_the_site_has(
    cli_env, capsys
):
    settings = cli_env
    services = bootstrap(settings)
    with FixtureSite(root=SITE) as site:
        whole = await asyncio.to_thread(crawl, settings, services, site.url("/docs/"), "docs", max_pages=100)
        cut = await asyncio.to_thread(crawl, settings, services, site.url("/docs/"), "small", max_pages=3)
    async with admin_api(settings, services) as (stub, address):
        got = await stub.GetJob(pb.GetJobRequest(job_id=cut.id))
        full = await stub.GetJob(pb.GetJobRequest(job_id=whole.id))
        await asyncio.to_thread(main, ["watch", cut.id, "--address", address])
        small = capsys.readouterr().out
        await asyncio.to_thread(main, ["watch", whole.id, "--address", address])
        brief = capsys.readouterr().out

    beyond = got.pages_beyond_max_pages
    assert beyond > 0 and got.pages_discovered == 3
    # "at least": the count is a lower bound of the site's pages, never more than a full crawl finds.
    assert 3 + beyond <= full.pages_discovered and full.pages_beyond_max_pages == 0
    assert f"3 of at least {3 + beyond} pages: raise --max-pages" in small
    assert "raise --max-pages" not in brief
    services.close()


async def test_the_progress_line_says_workers_are_loading_the_model_until_they_are_done(cli_env, capsys):
    settings = cli_env.model_copy(update={"watch_heartbeat_seconds": 0.2})
    services = bootstrap(settings)
    address = f"127.0.0.1:{free_port()}"
    seen: list[str] = []
    with FixtureSite(root=SITE) as site:
        async with serving(settings, services, address):
            job = await asyncio.to_thread(
                services.jobs.create, knowledge_base="docs", url=site.url("/docs/"), max_pages=2, max_depth=1
            )
            with services.jobs.loading_model("host-1234"):
                assert services.jobs.get(job.id).waiting_for == LOADING_MODEL
                watch = asyncio.create_task(asyncio.to_thread(main, ["watch", job.id, "--address", address]))
                await wait_for(capsys, "waiting for workers: loading the embedding model", seen)
            assert services.jobs.get(job.id).waiting_for == ""  # loaded: nothing known holds it up
            broker = build_broker(settings)  # the seed message, as StartCrawl sends it
            declare_actors(broker, settings).enqueue_page(job.id, job.url, 0)
            broker.close()
            with running_worker(settings, services):
                status = await asyncio.wait_for(watch, timeout=120)
    out = "".join(seen) + capsys.readouterr().out
    assert status == 0, out
    # Said once (not at every heartbeat), and gone from the line once pages are done.
    assert out.count("waiting for workers: loading the embedding model") == 1
    services.close()


def test_a_worker_process_says_it_is_loading_the_model_while_it_loads(make_settings, tmp_path):
    """The real boot step of `workers.entry` in its own process; only the model load is a stand-in."""
    settings = make_settings()
    jobs = JobStore(bootstrap(settings).redis, prefix=settings.key_prefix, retention=100)
    gate = tmp_path / "loaded"
    script = (
        "import pathlib, sys, time\n"
        "import workers.entry as entry\n"
        "crawler = entry._get_crawler()\n"
        "class WaitingLoad:\n"
        "    def load(self):\n"
        "        while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.05)\n"
        "crawler.embedder = WaitingLoad()\n"
        "entry.LoadAtBoot().before_worker_boot(entry.broker, None)\n"
        "print('booted', flush=True)\n"
    )
    env = {
        **os.environ,
        "RAGCORD_REDIS_URL": settings.redis_url,
        "RAGCORD_KEY_PREFIX": settings.key_prefix,
        "RAGCORD_DATA_DIR": str(settings.data_dir),
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_WORKER_METRICS_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(gate)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120  # (only so that a broken build cannot hang)
        while not jobs.workers_loading():
            assert proc.poll() is None and time.monotonic() < deadline, "the worker never said it was loading"
            time.sleep(0.05)
        (member,) = jobs.redis.zrange(jobs.keys.loading, 0, -1)
        assert member.decode().endswith(f"-{proc.pid}")
        gate.touch()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "booted" in out
    assert jobs.workers_loading() == 0


def test_a_worker_that_died_while_loading_stops_holding_jobs_up_when_its_lease_runs_out(
    redis_client, key_prefix
):
    jobs = JobStore(redis_client, prefix=key_prefix, retention=100)
    job = jobs.create(knowledge_base="docs", url=SEED, max_pages=2, max_depth=1)
    redis_client.zadd(jobs.keys.loading, {"host-1": time.time() - 1})  # its last renewal ran out a second ago
    assert jobs.workers_loading() == 0 and jobs.get(job.id).waiting_for == ""
    with jobs.loading_model("host-2", lease_seconds=600):
        assert jobs.workers_loading() == 1 and jobs.get(job.id).waiting_for == LOADING_MODEL
        assert [m.decode() for m in redis_client.zrange(jobs.keys.loading, 0, -1)] == [
            "host-2"
        ]  # the dead go
        jobs.start_page(job.id, SEED)
        jobs.finish_page(job.id, SEED, PageOutcome.INDEXED, chunks=1, is_seed=True)
        assert jobs.get(job.id).waiting_for == ""  # it has pages done: nothing holds it up any more
    assert redis_client.zcard(jobs.keys.loading) == 0
