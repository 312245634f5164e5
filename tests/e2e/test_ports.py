"""Ports another process holds, as an operator meets them: a second `make serve` beside the first is refused
in one line naming RAGCORD_GRPC_ADDRESS; a taken /metrics port is logged naming RAGCORD_METRICS_ADDRESS and
the admin API serves on without it."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.e2e.procs import RAGCORD, Grpcurl, Service, wait_healthy
from tests.harness import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def metrics_holder():
    """Another process's listener on what the server is told to use for /metrics."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture(scope="module")
def first_server(base_env, workdir, metrics_holder):
    """`ragcord rpc` as the first `make serve` runs it, its metrics port taken; yields its environment."""
    env = {
        **base_env,
        "RAGCORD_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "RAGCORD_METRICS_ADDRESS": f"127.0.0.1:{metrics_holder}",
        "RAGCORD_EMBEDDER": "none",
    }
    service = Service(["rpc"], env, workdir, workdir / "ports-first.log")
    try:
        wait_healthy(Grpcurl(env["RAGCORD_GRPC_ADDRESS"]), service)
        yield env, service
    finally:
        assert service.stop() == 0, service.tail()


def ragcord(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "RAGCORD_METRICS_ADDRESS": "", "RAGCORD_WORKER_METRICS_PORT": "0"}
    full.pop("DISCORD_TOKEN", None)
    return subprocess.run([RAGCORD, *args], env=full, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["rpc", "serve"])
def test_a_second_server_on_a_taken_admin_address_exits_1_in_one_line_naming_the_setting(
    first_server, command
):
    env, first = first_server
    address = env["RAGCORD_GRPC_ADDRESS"]

    second = ragcord(env, command)

    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stderr.splitlines() == [
        f"error: the admin API's address {address} is taken (another ragcord?): "
        "set RAGCORD_GRPC_ADDRESS to a free one"
    ]
    assert first.alive()
    wait_healthy(Grpcurl(address), first, timeout=10)  # the first one still answers, alone


def test_a_taken_metrics_port_is_logged_naming_the_setting_and_the_api_serves_on(
    first_server, metrics_holder
):
    env, first = first_server
    log = first.log.read_text(errors="replace")

    assert f"metrics disabled: cannot listen on 127.0.0.1:{metrics_holder}" in log
    assert "set RAGCORD_METRICS_ADDRESS" in log
    assert "Traceback" not in log
    jobs = Grpcurl(env["RAGCORD_GRPC_ADDRESS"]).call("ListJobs", {})
    assert jobs == [{}]  # served: no jobs under this prefix yet
