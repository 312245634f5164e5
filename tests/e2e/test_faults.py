"""Faults the deployed processes must survive, with real processes, a real Redis and a real RabbitMQ:

- Redis SIGKILLed mid-crawl and restarted from its AOF: nothing is lost, every process reconnects by
  itself, and an RPC made while Redis is down is UNAVAILABLE at once instead of hanging;
- the admin server SIGKILLed and restarted under 50 watchers: each resumes from its cursor and sees
  every event of the job exactly once;
- a worker SIGKILLed mid-page at the default heartbeat timeout, on each broker: the job still ends
  as a clean run does; the time it took is printed;
- the bot's gateway dropped (RESUME) and the bot process restarted (IDENTIFY): its threads go on
  answering with their memory.

The measured figures are printed (`pytest -s` shows them) for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from ragcord.bindings import KnowledgeBaseBindings
from rpc.v1 import admin_pb2 as pb
from rpc.v1 import admin_pb2_grpc
from tests.conftest import CI
from tests.discord_fake import FakeDiscord
from tests.e2e.conftest import SITE, TOKEN
from tests.e2e.procs import (
    RABBITMQ_URL,
    Grpcurl,
    GrpcurlError,
    RedisServer,
    Service,
    delete_rabbitmq_queues,
    discord_env,
    rabbitmq_problem,
    wait_for_log,
    wait_healthy,
)
from tests.e2e.test_worker_crash import TERMINAL, crawl, stored
from tests.harness import delete_prefixed_keys, free_port
from tests.sitekit import FixtureSite

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VENV_Q = "How do I make a separate Python environment for my Quillstack project?"
FOLLOW_UP = "and how do I activate it?"
EXCLUDE = ["/special/"]
COUNTERS = ("pages_discovered", "pages_done", "pages_skipped", "pages_failed", "chunks_indexed")


def report(line: str) -> None:
    """A measured figure: shown with `pytest -s`, and kept in the test log either way."""
    print(f"\nFAULTS: {line}", flush=True)


@pytest.fixture
def prefix(redis_url) -> Iterator[str]:
    """A key prefix (and Dramatiq namespace, and RabbitMQ queue prefix) of this test's own."""
    value = f"fault{uuid.uuid4().hex[:10]}"
    yield value
    delete_prefixed_keys(redis_url, value)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request, prefix) -> Iterator[dict[str, str]]:
    """The environment that selects the broker; RabbitMQ is skipped when it does not answer (not in CI)."""
    if request.param == "redis":
        yield {}
        return
    problem = rabbitmq_problem()
    if problem:
        if CI:
            pytest.fail(problem)
        pytest.skip(problem)
    yield {"RAGCORD_BROKER_URL": RABBITMQ_URL}
    delete_rabbitmq_queues(prefix)


def cluster_env(base_env: dict[str, str], prefix: str, workdir: Path, **extra: str) -> dict[str, str]:
    return {
        **base_env,
        "RAGCORD_KEY_PREFIX": prefix,
        "RAGCORD_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "RAGCORD_ADMIN_TOKEN": TOKEN,
        "RAGCORD_EMBEDDER": "none",
        "RAGCORD_WORKER_PROCESSES": "1",
        "RAGCORD_WORKER_THREADS": "2",
        "RAGCORD_DATA_DIR": str(workdir / f"{prefix}-data"),
        **extra,
    }


def events_of(grpcurl: Grpcurl, job_id: str) -> list[dict]:
    """The job's whole event log (no snapshot, no heartbeats), read from the start after it ended."""
    return [e for e in grpcurl.call("WatchJob", {"job_id": job_id}, timeout=240) if e.get("event_id")]


def _done(jobs: list[dict]) -> int:
    return int(jobs[0].get("pages_done", 0))


def check_complete(job: dict, events: list[dict]) -> None:
    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    terminal = [
        e for e in events if e["kind"] == "JOB_EVENT_KIND_STATE_CHANGED" and e["job"]["state"] in TERMINAL
    ]
    assert len(terminal) == 1
    pages = [e["page_url"] for e in events if e.get("page_url")]
    assert len(pages) == len(set(pages))  # every page reported once


# -- 1. Redis SIGKILLed and restarted ------------------------------------------------------------------


async def _call(function, *args, **kwargs):
    """Blocking test helpers (grpcurl, waits) off the loop: the fake Discord runs on it."""
    return await asyncio.to_thread(function, *args, **kwargs)


def _unavailable_within(grpcurl: Grpcurl, method: str, data: dict) -> float:
    started = time.monotonic()
    with pytest.raises(GrpcurlError) as raised:
        grpcurl.call(method, data, timeout=30)
    elapsed = time.monotonic() - started
    assert raised.value.code == "Unavailable", str(raised.value)
    assert "unavailable" in str(raised.value).lower()
    return elapsed


async def _ask(fake: FakeDiscord, question: str) -> dict:
    before = len(fake.threads)
    interaction = await fake.invoke_command(fake.alice, "ask", {"question": question})
    await fake.wait_for(lambda: len(fake.threads) > before and interaction.followups, timeout=60)
    return interaction.followups[0]


async def _say_in_thread(fake: FakeDiscord, thread_id: str, content: str) -> dict:
    def in_thread() -> list[dict]:
        return [m for m in fake.messages if m["channel_id"] == str(thread_id)]

    count = len(in_thread())
    await fake.send_user_message(fake.alice, content, channel_id=thread_id)
    await fake.wait_for(lambda: len(in_thread()) > count, timeout=60)
    return in_thread()[-1]


def _turns(client: redis.Redis, prefix: str, thread_id: str) -> list[bytes]:
    return list(client.lrange(f"{prefix}:conv:{thread_id}:turns", 0, -1))


async def test_redis_killed_mid_crawl_loses_nothing_and_every_process_reconnects(base_env, prefix, tmp_path):
    server = RedisServer(tmp_path / "redis", free_port())
    await _call(server.start)
    client = redis.Redis.from_url(server.url)
    services: list[Service] = []
    try:
        async with FakeDiscord(interaction_timeout=30) as fake:
            env = cluster_env(
                base_env,
                prefix,
                tmp_path,
                RAGCORD_REDIS_URL=server.url,
                RAGCORD_DEFAULT_KNOWLEDGE_BASE="nothing-here",
                **discord_env(fake),
            )
            grpcurl = Grpcurl(env["RAGCORD_GRPC_ADDRESS"], TOKEN)
            for name in ("rpc", "worker", "bot"):
                services.append(Service([name], env, tmp_path, tmp_path / f"redis-{name}.log"))
            await _call(wait_healthy, grpcurl, services[0])
            await fake.wait_for(lambda: fake.identifies >= 1 and "ask" in fake.commands, timeout=90)

            # Given a crawled knowledge base the server asks, and a conversation in a thread
            with FixtureSite(root=SITE) as site:
                docs, docs_events = await _call(crawl, grpcurl, site.url("/docs/"), "docs")
            assert docs["state"] == "JOB_STATE_SUCCEEDED", docs
            KnowledgeBaseBindings(client, prefix=prefix, default="nothing-here").bind(fake.guild_id, "docs")
            answer = await _ask(fake, VENV_Q)
            thread_id = answer["id"]  # the thread starts at the answer
            assert "/docs/virtualenv.html" in answer["content"], answer["content"]
            turns_before = _turns(client, prefix, thread_id)
            assert len(turns_before) == 2

            # When Redis is SIGKILLed in the middle of a second crawl
            with FixtureSite(root=SITE, delay=0.3) as slow_site:
                (job,) = await _call(
                    grpcurl.call,
                    "StartCrawl",
                    {"url": slow_site.url("/docs/"), "knowledge_base": "again", "exclude_patterns": EXCLUDE},
                )
                deadline = time.monotonic() + 90
                while _done(await _call(grpcurl.call, "GetJob", {"job_id": job["id"]})) < 3:
                    assert time.monotonic() < deadline, "the crawl did not start"
                    await asyncio.sleep(0.1)
                await _call(server.kill)
                killed_at = time.monotonic()

                # then a request while it is down is UNAVAILABLE at once, never a hang
                get_job = await _call(_unavailable_within, grpcurl, "GetJob", {"job_id": job["id"]})
                list_jobs = await _call(_unavailable_within, grpcurl, "ListJobs", {})
                report(
                    f"RPC while Redis is down: UNAVAILABLE in {get_job:.2f} s (GetJob), "
                    f"{list_jobs:.2f} s (ListJobs)"
                )
                assert get_job < 5 and list_jobs < 5  # the bound: "returns within 5 s, never hangs"
                await asyncio.sleep(max(0.0, 3 - (time.monotonic() - killed_at)))  # down for 3 s at least

                # and when it comes back from its AOF
                ready = await _call(server.start)
                down = time.monotonic() - killed_at - ready
                report(f"Redis down {down:.1f} s; answering again {ready:.2f} s after its restart (AOF)")

                # the first WatchJob works (no dead pooled connection) and the crawl finishes by itself
                watched = await _call(grpcurl.call, "WatchJob", {"job_id": job["id"]}, timeout=240)
            again = watched[-1]["job"]
            check_complete(again, [e for e in watched if e.get("event_id")])
            for field in COUNTERS:
                assert again.get(field) == docs.get(field), field
            report(f"crawl across the Redis restart: {again['pages_done']} pages done, as a clean run")

            # the earlier job and its events survived
            (docs_after,) = await _call(grpcurl.call, "GetJob", {"job_id": docs["id"]})
            for field in ("state", *COUNTERS):
                assert docs_after.get(field) == docs.get(field), field
            logged = [e for e in docs_events if e.get("event_id")]
            assert await _call(events_of, grpcurl, docs["id"]) == logged

            # the bot reconnected too: the binding and the conversation survived, the thread answers on
            follow = await _say_in_thread(fake, thread_id, FOLLOW_UP)
            assert "/docs/virtualenv.html" in follow["content"], follow["content"]
            turns_after = _turns(client, prefix, thread_id)
            assert turns_after[:2] == turns_before and len(turns_after) == 4
            bindings = KnowledgeBaseBindings(client, prefix=prefix, default="nothing-here")
            assert bindings.resolve(fake.guild_id) == "docs"
            for service in services:
                assert service.alive(), service.tail()
    finally:
        for service in services:
            service.stop()
        client.close()
        server.stop()


# -- 2. the admin server SIGKILLed and restarted under 50 watchers ------------------------------------


class Watcher:
    """A WatchJob client that resumes after its last event whenever the stream breaks."""

    def __init__(self, address: str, job_id: str) -> None:
        self.address = address
        self.job_id = job_id
        self.events: list[pb.JobEvent] = []
        self.breaks = 0

    async def run(self) -> None:
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            while True:
                cursor = self.events[-1].event_id if self.events else ""
                try:
                    request = pb.WatchJobRequest(job_id=self.job_id, after_event_id=cursor)
                    async for event in stub.WatchJob(request, metadata=metadata, wait_for_ready=True):
                        if not event.event_id:
                            continue  # the snapshot and heartbeats are not part of the log
                        self.events.append(event)
                        if event.kind == pb.JOB_EVENT_KIND_STATE_CHANGED and event.job.state in (
                            pb.JOB_STATE_SUCCEEDED,
                            pb.JOB_STATE_FAILED,
                            pb.JOB_STATE_CANCELLED,
                        ):
                            return
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                        raise
                    self.breaks += 1
                    await asyncio.sleep(0.2)


async def test_fifty_watchers_resume_across_an_admin_server_kill_and_see_every_event_once(
    base_env, prefix, tmp_path
):
    env = cluster_env(base_env, prefix, tmp_path)
    address = env["RAGCORD_GRPC_ADDRESS"]
    grpcurl = Grpcurl(address, TOKEN)
    rpc = Service(["rpc"], env, tmp_path, tmp_path / "watch-rpc.log")
    worker = Service(["worker"], env, tmp_path, tmp_path / "watch-worker.log")
    services = [rpc, worker]
    try:
        await _call(wait_healthy, grpcurl, rpc)
        with FixtureSite(root=SITE, delay=0.4) as site:
            (job,) = await _call(
                grpcurl.call,
                "StartCrawl",
                {"url": site.url("/docs/"), "knowledge_base": "watched", "exclude_patterns": EXCLUDE},
            )
            watchers = [Watcher(address, job["id"]) for _ in range(50)]
            tasks = [asyncio.create_task(w.run()) for w in watchers]
            deadline = time.monotonic() + 120
            while not all(len(w.events) >= 8 for w in watchers):  # well into the crawl
                assert time.monotonic() < deadline, "the watchers did not get their first events"
                assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
                await asyncio.sleep(0.05)
            cursors = sorted({len(w.events) for w in watchers})

            # When the admin server dies and a new one starts on the same address
            await _call(rpc.kill_all)
            killed_at = time.monotonic()
            await asyncio.sleep(1)
            rpc = Service(["rpc"], env, tmp_path, tmp_path / "watch-rpc-2.log")
            services.append(rpc)
            await _call(wait_healthy, grpcurl, rpc)
            report(f"admin server back {time.monotonic() - killed_at:.1f} s after its SIGKILL")

            await asyncio.wait_for(asyncio.gather(*tasks), 240)
        full = await _call(events_of, grpcurl, job["id"])

        # Then every watcher saw the whole log once, in order, across the restart
        expected = [(e["event_id"], e["kind"], e.get("page_url", "")) for e in full]
        kinds = {name: value for value, name in pb.JobEventKind.items()}
        for watcher in watchers:
            seen = [(e.event_id, kinds.get(e.kind, str(e.kind)), e.page_url) for e in watcher.events]
            assert seen == expected
        assert all(w.breaks >= 1 for w in watchers)  # each of them really lost its stream
        assert full[-1]["job"]["state"] == "JOB_STATE_SUCCEEDED"
        report(
            f"50 watchers across an admin server SIGKILL (cursors at {cursors[0]}..{cursors[-1]} events): "
            f"each got {len(expected)}/{len(expected)} events exactly once"
        )
    finally:
        for service in services:
            service.stop()


# -- 3 and 4. a worker SIGKILLed mid-page at the default heartbeat timeout, on each broker ---------------


def test_a_worker_killed_mid_page_at_default_timeouts_loses_nothing(base_env, prefix, broker, tmp_path):
    # The site takes 8 requests at once: the 2 slots the dead worker held until their lease ends (~100 s at
    # the defaults, ragcord's politeness) do not stall the crawl, so what is measured is the broker's part.
    env = cluster_env(base_env, prefix, tmp_path, RAGCORD_MAX_CONCURRENT_REQUESTS="8", **broker)
    defaults = ("RAGCORD_WORKER_HEARTBEAT_TIMEOUT_MS", "RAGCORD_BROKER_MAINTENANCE_CHANCE")
    assert not any(name in env for name in defaults)
    kind = "rabbitmq" if broker else "redis"
    grpcurl = Grpcurl(env["RAGCORD_GRPC_ADDRESS"], TOKEN)
    rpc = Service(["rpc"], env, tmp_path, tmp_path / f"kill-{kind}-rpc.log")
    first = Service(["worker"], env, tmp_path, tmp_path / f"kill-{kind}-worker-a.log")
    services = [rpc, first]
    try:
        wait_healthy(grpcurl, rpc)
        with FixtureSite(root=SITE, delay=0.3) as site:
            seed = site.url("/docs/")
            clean, _ = crawl(grpcurl, seed, "clean")  # the crawl e2e on this broker
            (clean_sources,) = grpcurl.call("ListSources", {"knowledge_base": "clean"})
            timing: dict[str, float] = {}

            def second_joins_then_first_dies() -> None:
                second = Service(["worker"], env, tmp_path, tmp_path / f"kill-{kind}-worker-b.log")
                services.append(second)
                wait_for_log(second, "ready for action")
                first.kill_all()  # mid-page: two threads each fetching a page that takes 0.3 s
                timing["killed"] = time.monotonic()

            crashed, events = crawl(grpcurl, seed, "crash", when_busy=second_joins_then_first_dies)
            ended = time.monotonic()
            (crash_sources,) = grpcurl.call("ListSources", {"knowledge_base": "crash"})

        assert not first.alive() and services[-1].alive()
        assert clean["state"] == crashed["state"] == "JOB_STATE_SUCCEEDED"
        for field in COUNTERS:
            assert crashed.get(field) == clean.get(field), field
        assert stored(crash_sources) == stored(clean_sources)
        check_complete(crashed, [e for e in events if e.get("event_id")])
        report(
            f"worker SIGKILLed mid-page on {kind} (heartbeat timeout and maintenance at their defaults): "
            f"the job ended {ended - timing['killed']:.1f} s after the kill, SUCCEEDED with "
            f"{crashed.get('pages_done')}/{clean.get('pages_done')} pages"
        )
    finally:
        for service in services:
            service.stop()


# -- 5. the bot: gateway dropped, process restarted ------------------------------------------------------


async def test_the_bot_answers_in_its_threads_after_a_dropped_gateway_and_a_process_restart(
    base_env, prefix, tmp_path, redis_url
):
    env = cluster_env(base_env, prefix, tmp_path)
    grpcurl = Grpcurl(env["RAGCORD_GRPC_ADDRESS"], TOKEN)
    client = redis.Redis.from_url(redis_url)
    services: list[Service] = []
    try:
        async with FakeDiscord(interaction_timeout=30) as fake:
            env.update(discord_env(fake))
            services.append(Service(["rpc"], env, tmp_path, tmp_path / "bot-rpc.log"))
            services.append(Service(["worker"], env, tmp_path, tmp_path / "bot-worker.log"))
            await _call(wait_healthy, grpcurl, services[0])
            with FixtureSite(root=SITE) as site:
                docs, _ = await _call(crawl, grpcurl, site.url("/docs/"), "docs")
            assert docs["state"] == "JOB_STATE_SUCCEEDED", docs
            KnowledgeBaseBindings(client, prefix=prefix, default="default").bind(fake.guild_id, "docs")
            bot = Service(["bot"], env, tmp_path, tmp_path / "bot-1.log")
            services.append(bot)
            await fake.wait_for(lambda: fake.identifies == 1 and "ask" in fake.commands, timeout=90)
            answer = await _ask(fake, VENV_Q)
            thread_id = answer["id"]  # the thread starts at the answer
            assert "/docs/virtualenv.html" in answer["content"], answer["content"]

            # When the gateway drops, discord.py RESUMEs the same session
            await fake.drop_gateway()
            await fake.wait_for(lambda: fake.resumes >= 1, timeout=60)
            follow = await _say_in_thread(fake, thread_id, FOLLOW_UP)
            assert "/docs/virtualenv.html" in follow["content"], follow["content"]
            assert fake.identifies == 1

            # When the bot process dies and a new one starts, it IDENTIFYs a new session
            await _call(bot.kill_all)
            bot = Service(["bot"], env, tmp_path, tmp_path / "bot-2.log")
            services.append(bot)
            await fake.wait_for(lambda: fake.identifies == 2, timeout=90)
            again = await _say_in_thread(fake, thread_id, "and how do I leave it again?")

            # Then the thread still answers, from its remembered conversation
            assert "/docs/virtualenv.html" in again["content"], again["content"]
            turns = _turns(client, prefix, thread_id)
            assert len(turns) == 6 and VENV_Q in turns[0].decode()  # three questions, three answers
            report(f"bot: {fake.resumes} RESUME, {fake.identifies} IDENTIFYs; the thread answered after each")
    finally:
        for service in services:
            service.stop()
        client.close()
