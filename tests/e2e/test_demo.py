"""The README quickstart as typed: a plain `ragcord serve`, then `ragcord demo`, then `ragcord ask`."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.e2e.conftest import TOKEN
from tests.e2e.procs import RAGCORD, Grpcurl, Service, wait_healthy
from tests.harness import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plain_server(base_env, workdir):
    """`ragcord serve` as `make serve` runs it: private and loopback addresses refused."""
    env = {
        **base_env,
        "RAGCORD_ALLOW_PRIVATE_NETWORKS": "false",
        "RAGCORD_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "RAGCORD_ADMIN_TOKEN": TOKEN,
        "RAGCORD_EMBEDDER": "local",
        "RAGCORD_WORKER_PROCESSES": "1",
        "RAGCORD_DATA_DIR": str(workdir / "demo-data"),
    }
    service = Service(["serve"], env, workdir, workdir / "demo-serve.log")
    try:
        wait_healthy(Grpcurl(env["RAGCORD_GRPC_ADDRESS"], TOKEN), service)
        yield env
    finally:
        assert service.stop() == 0, service.tail()


def ragcord(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The CLI in a second terminal: the same environment as the server's (the same .env)."""
    full = {**os.environ, **env, "COLUMNS": "200"}
    full.pop("DISCORD_TOKEN", None)
    return subprocess.run([RAGCORD, *args], env=full, capture_output=True, text=True, timeout=timeout)


def test_the_quickstart_reaches_a_cited_answer_and_a_second_demo_adds_no_copies(plain_server):
    refused = ragcord(plain_server, "crawl", "http://127.0.0.1:9/docs/", "--kb", "docs")
    assert refused.returncode != 0 and "PERMISSION_DENIED" in refused.stderr  # why the demo exists

    demo = ragcord(plain_server, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    [job_id] = re.findall(r"^job (\w+) SUCCEEDED: ", demo.stdout, re.MULTILINE)
    assert 'ragcord ask "How do I rotate the secret key?" --kb demo' in demo.stdout
    assert "ragcord chat --kb demo" in demo.stdout
    # Into a pipe (`make demo | cat`): progress as whole plain lines, no bar cut at 80 columns.
    assert "━" not in demo.stdout
    assert any(line.startswith("running: ") for line in demo.stdout.splitlines()), demo.stdout
    # The job was the demo server's own: said, and true of the server of `make serve`.
    assert (
        f"Job {job_id} belonged to the demo's own server, which has stopped: `ragcord jobs` and "
        "`ragcord watch` on the server of `make serve` do not know it. Knowledge base demo is shared: "
        "that server answers from it."
    ) in demo.stdout.splitlines()
    jobs = ragcord(plain_server, "jobs")
    assert jobs.returncode == 0 and job_id not in jobs.stdout

    answer = ragcord(plain_server, "ask", "How do I rotate the secret key?", "--kb", "demo")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "QUILL_SECRET_KEY_FALLBACKS" in answer.stdout
    assert "http://127.0.0.1:8765/docs/security.html" in answer.stdout  # cited

    # Run again (one demo run is slow on a small machine, so this shares the first): the pages keep their
    # URLs, so the knowledge base is updated, not doubled.
    grpcurl = Grpcurl(plain_server["RAGCORD_GRPC_ADDRESS"], TOKEN)
    (before,) = grpcurl.call("ListSources", {"knowledge_base": "demo"})
    again = ragcord(plain_server, "demo")
    assert again.returncode == 0, again.stdout + again.stderr
    (after,) = grpcurl.call("ListSources", {"knowledge_base": "demo"})

    assert sorted(s["url"] for s in after["sources"]) == sorted(s["url"] for s in before["sources"])
    assert len(before["sources"]) > 30
