"""SIGTERM (what systemd, Docker and Kubernetes send) stops `ragcord rpc` and `ragcord bot` as it stops
`ragcord serve`: gracefully, with a log line, exit 0. And `serve` with the bot builds its services once.

Real processes, the real grpc client, the loopback Discord of tests/discord_fake.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import grpc
import pytest

from rpc.v1 import admin_pb2 as pb
from rpc.v1 import admin_pb2_grpc
from tests.discord_fake import FakeDiscord
from tests.e2e.procs import RAGCORD, Grpcurl, wait_healthy
from tests.harness import free_port

pytestmark = pytest.mark.e2e
EXIT_SECONDS = 60  # "exits, never hangs": far above the 5 s grace of the admin API


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [RAGCORD, *args],
            env=env,
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return -9
    return process.returncode


def assert_stopped_gracefully(log: Path, code: int, name: str) -> None:
    """Exit code 0, the SIGTERM said in the log, and the stop as the log's last line."""
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert f"{name}: SIGTERM received, stopping" in text
    assert f"{name} stopped" in text.splitlines()[-1]


@pytest.fixture
def env(base_env) -> dict[str, str]:
    values = {**os.environ, **base_env, "RAGCORD_EMBEDDER": "none"}
    values.pop("DISCORD_TOKEN", None)
    return values


def discord_env(env: dict[str, str], fake: FakeDiscord) -> dict[str, str]:
    return {
        **env,
        "DISCORD_TOKEN": fake.token,
        "RAGCORD_DISCORD_API_BASE_URL": fake.api_base,
        "RAGCORD_DISCORD_GATEWAY_URL": fake.gateway_url,
    }


async def test_sigterm_stops_the_admin_api_gracefully_with_a_watch_open(env, workdir, redis_url, e2e_prefix):
    address = f"127.0.0.1:{free_port()}"
    log = workdir / "signals-rpc.log"
    process = start(["rpc"], {**env, "RAGCORD_GRPC_ADDRESS": address}, log)
    try:
        await asyncio.to_thread(wait_healthy, Grpcurl(address), None)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            job = await stub.StartCrawl(pb.StartCrawlRequest(url="http://127.0.0.1:9/", knowledge_base="sig"))
            watch = stub.WatchJob(pb.WatchJobRequest(job_id=job.id))
            assert (await watch.read()).kind == pb.JOB_EVENT_KIND_SNAPSHOT  # no worker: it stays queued

            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, EXIT_SECONDS)
            with pytest.raises(grpc.aio.AioRpcError):  # the open stream ends; the client may resume
                while await watch.read() is not grpc.aio.EOF:
                    pass
    finally:
        stop(process)
    assert_stopped_gracefully(log, code, "admin API")


async def test_sigterm_stops_the_bot_gracefully(env, workdir):
    log = workdir / "signals-bot.log"
    async with FakeDiscord() as fake:
        process = start(["bot"], discord_env(env, fake), log)
        try:
            await fake.wait_for(lambda: fake.identifies >= 1 and "ask" in fake.commands, timeout=90)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, EXIT_SECONDS)
        finally:
            stop(process)
    assert_stopped_gracefully(log, code, "Discord bot")


async def test_serve_with_the_bot_builds_its_services_once_and_stops_on_sigterm(env, workdir):
    address = f"127.0.0.1:{free_port()}"
    log = workdir / "signals-serve.log"
    async with FakeDiscord() as fake:
        serve_env = {
            **discord_env(env, fake),
            "RAGCORD_GRPC_ADDRESS": address,
            "RAGCORD_WORKER_PROCESSES": "1",
            "RAGCORD_WORKER_THREADS": "1",
            "RAGCORD_DATA_DIR": str(workdir / "signals-serve"),
        }
        process = start(["serve"], serve_env, log)
        try:
            await asyncio.to_thread(wait_healthy, Grpcurl(address), None, 180)
            await fake.wait_for(lambda: fake.identifies >= 1 and "ask" in fake.commands, timeout=120)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, EXIT_SECONDS)
        finally:
            stop(process)
    text = log.read_text(errors="replace")
    assert code == 0, text
    # The API and the bot share one set of services (one model in memory): built once in this process.
    built = [line for line in text.splitlines() if "services built" in line]
    assert len([line for line in built if f"(process {process.pid})" in line]) == 1, text
