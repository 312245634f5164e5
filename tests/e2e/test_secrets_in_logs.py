"""No secret ever reaches a log: the real `ragcord serve` (admin API with a token, a Dramatiq worker process,
the Discord bot), all at DEBUG, with recognisable secrets, driven through everything that could print
one: a crawl, requests with a wrong and a near-miss token, and a model endpoint that fails with an error
quoting the API key (so the exception the process logs contains it). Every line of every process's
stdout and stderr is then searched for each secret."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.discord_fake import FakeDiscord
from tests.e2e.conftest import SITE
from tests.e2e.procs import Grpcurl, GrpcurlError, wait_healthy
from tests.harness import free_port
from tests.openai_fake import FakeOpenAI
from tests.sitekit import FixtureSite

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "adm1n-SECRET-7b3e9f41c2d8"
DISCORD_TOKEN = "d1sc0rd-SECRET-MTA5ODc2NTQzMjEw.Gx9kLq"
OPENAI_KEY = "sk-SECRET-openai-4e8a1f0c6b2d9e7a"
SECRETS = {"admin token": ADMIN_TOKEN, "Discord token": DISCORD_TOKEN, "OpenAI key": OPENAI_KEY}


def wait_job_done(grpcurl: Grpcurl, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = grpcurl.call("GetJob", {"job_id": job_id})[0]
        if job.get("state") in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} did not end")


async def test_no_secret_reaches_any_process_output(base_env, workdir):
    log_path = workdir / "secrets-serve.log"
    model_error = f"Incorrect API key provided: {OPENAI_KEY}. Authorization: Bearer {OPENAI_KEY}"
    async with FakeDiscord(token=DISCORD_TOKEN) as fake:
        with FakeOpenAI() as llm, FixtureSite(root=SITE) as site:
            llm.fail_next(401, times=1000, message=model_error)  # every model call fails, quoting the key
            address = f"127.0.0.1:{free_port()}"
            env = {
                **os.environ,
                **base_env,
                "RAGCORD_DATA_DIR": str(workdir / "secrets-data"),
                "RAGCORD_GRPC_ADDRESS": address,
                "RAGCORD_ADMIN_TOKEN": ADMIN_TOKEN,
                "DISCORD_TOKEN": DISCORD_TOKEN,
                "RAGCORD_DISCORD_API_BASE_URL": fake.api_base,
                "RAGCORD_DISCORD_GATEWAY_URL": fake.gateway_url,
                "RAGCORD_DISCORD_GUILD_IDS": str(fake.guild_id),
                "OPENAI_API_KEY": OPENAI_KEY,
                "OPENAI_BASE_URL": llm.base_url,
                "RAGCORD_ANSWERER": "openai",
                "RAGCORD_OPENAI_MAX_RETRIES": "0",
                "RAGCORD_EMBEDDER": "none",
                "RAGCORD_DEFAULT_KNOWLEDGE_BASE": "docs",
                "RAGCORD_LOG_LEVEL": "DEBUG",
                "RAGCORD_WORKER_PROCESSES": "1",
                "RAGCORD_WORKER_THREADS": "2",
            }
            with open(log_path, "wb") as out:
                process = subprocess.Popen(
                    [str(Path(sys.executable).parent / "ragcord"), "serve"],
                    env=env,
                    cwd=workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                grpcurl = Grpcurl(address, ADMIN_TOKEN)
                await asyncio.to_thread(wait_healthy, grpcurl, None, 120)
                await fake.wait_for(lambda: fake.identifies >= 1 and "ask" in fake.commands, timeout=120)

                # Refused tokens: none, wrong, and near misses that contain the real one.
                for token in (None, "wrong", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):
                    with pytest.raises(GrpcurlError) as refused:
                        await asyncio.to_thread(grpcurl.call, "ListJobs", {}, token=token)
                    assert refused.value.code == "Unauthenticated"

                # A crawl: the worker process indexes pages.
                job = (
                    await asyncio.to_thread(
                        grpcurl.call,
                        "StartCrawl",
                        {"url": site.url("/docs/"), "knowledge_base": "docs", "max_pages": 4},
                    )
                )[0]
                # (Whether it succeeds is other tests' concern: here the worker's logging is what counts.)
                await asyncio.to_thread(wait_job_done, grpcurl, job["id"])

                # The model fails with the key in its error, through the API and through Discord.
                with pytest.raises(GrpcurlError) as unavailable:
                    await asyncio.to_thread(
                        grpcurl.call,
                        "Ask",
                        {"question": "How do I install Quillstack?", "knowledge_base": "docs"},
                    )
                assert unavailable.value.code == "Unavailable"
                interaction = await fake.invoke_command(
                    fake.alice, "ask", {"question": "How do I install it?"}
                )
                await fake.wait_for(lambda: interaction.followups, timeout=60)
                assert "can't answer right now" in interaction.followups[0]["content"]
                assert llm.chat_requests()  # the model was called (and failed) at least once
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    code = await asyncio.to_thread(process.wait, 60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    code = process.wait()
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert job["id"] in output and "workers." in output  # the worker process logged the crawl
    assert "language model call failed" in output  # the failure was logged ...
    assert "[redacted]" in output  # ... with the key taken out
    leaks = {
        name: [line for line in output.splitlines() if secret in line][:3]
        for name, secret in SECRETS.items()
        if secret in output
    }
    assert not leaks, leaks
    for message in fake.messages:  # nor did any reach Discord
        assert not any(secret in message["content"] for secret in SECRETS.values())
