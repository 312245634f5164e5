from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.browser_kit import chromium, docsify_js  # noqa: F401 - fixtures of the rendering test
from tests.e2e.procs import Grpcurl, Service, wait_healthy
from tests.harness import delete_prefixed_keys, free_port
from tests.sitekit import FixtureSite

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
TOKEN = "e2e-token"


@pytest.fixture(scope="module")
def e2e_prefix(redis_url):
    prefix = f"e2e{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefixed_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def base_env(redis_url, e2e_prefix, workdir) -> dict[str, str]:
    return {
        "RAGCORD_REDIS_URL": redis_url,
        "RAGCORD_KEY_PREFIX": e2e_prefix,
        "RAGCORD_DATA_DIR": str(workdir / "data"),
        "RAGCORD_ALLOW_PRIVATE_NETWORKS": "true",
        "RAGCORD_FETCH_TIMEOUT_SECONDS": "2",
        "RAGCORD_PAGE_RETRIES": "1",
        "RAGCORD_RETRY_BACKOFF_MS": "100",
        "RAGCORD_WATCH_HEARTBEAT_SECONDS": "1",
        "RAGCORD_METRICS_ADDRESS": "",
        "RAGCORD_WORKER_METRICS_PORT": "0",
    }


@pytest.fixture(scope="module")
def site():
    with FixtureSite(root=SITE) as running:
        yield running


@pytest.fixture(scope="module")
def server(base_env, workdir):
    """`ragcord serve` with a token and the local embedder: what an operator runs."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        **base_env,
        "RAGCORD_GRPC_ADDRESS": address,
        "RAGCORD_ADMIN_TOKEN": TOKEN,
        "RAGCORD_EMBEDDER": "local",
        "RAGCORD_WORKER_PROCESSES": "1",
        "RAGCORD_WORKER_THREADS": "4",
    }
    service = Service(["serve"], env, workdir, workdir / "serve.log")
    grpcurl = Grpcurl(address, TOKEN)
    try:
        wait_healthy(grpcurl, service)
        yield grpcurl, env, service
    finally:
        code = service.stop()
        assert code == 0, f"ragcord serve exited {code}:\n{service.tail()}"
