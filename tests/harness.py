"""Real components wired together for integration tests: a Dramatiq worker in this process and the
admin server on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import grpc
import redis

from ragcord.answering.service import AskService
from ragcord.bootstrap import Services, bootstrap
from ragcord.settings import Settings
from rpc.server import build_server
from rpc.v1 import admin_pb2_grpc
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.pipeline import PageCrawler, build_page_crawler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_worker(settings: Settings, services: Services | None = None, threads: int = 2):
    """A real Dramatiq worker (Redis broker) consuming crawl pages in background threads."""
    services = services or bootstrap(settings)
    broker = build_broker(settings)
    crawler: list[PageCrawler] = []
    actors = declare_actors(broker, settings, lambda: crawler[0])
    crawler.append(build_page_crawler(services, actors.enqueue_page))
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
    worker.start()
    try:
        yield services
    finally:
        worker.stop(timeout=10_000)
        broker.close()
        crawler[0].fetcher.close()
        if crawler[0].rendering is not None:
            crawler[0].rendering.close()  # a headless browser, if a page started one


@contextlib.contextmanager
def local_services(redis_url: str, data_dir: Path, *, name: str) -> Iterator[Services]:
    """Services with the local embedder under a key prefix of their own (`name` and a random suffix), that
    may crawl loopback sites; closed, and every key they wrote deleted, afterwards."""
    prefix = f"{name}{uuid.uuid4().hex[:8]}"
    settings = Settings(
        _env_file=None,
        redis_url=redis_url,
        key_prefix=prefix,
        allow_private_networks=True,
        data_dir=data_dir,
        embedder="local",
    )
    services = bootstrap(settings)
    try:
        yield services
    finally:
        services.close()
        delete_prefixed_keys(redis_url, prefix)


def delete_prefixed_keys(redis_url: str, prefix: str) -> None:
    """Every key a test's own prefix wrote: ours (`prefix:`), Dramatiq's (`prefix-dramatiq`) and those of a
    server the test's own started under a prefix of its own (the demo's `prefix-demo:`)."""
    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in (f"{prefix}:*", f"{prefix}-*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@contextlib.asynccontextmanager
async def admin_api(settings: Settings, services: Services | None = None, *, ask: AskService | None = None):
    """The admin server on a free port; yields (stub, address). `ask`: the server's answerer seam."""
    address = f"127.0.0.1:{free_port()}"
    settings = settings.model_copy(update={"grpc_address": address})
    server, _ = await build_server(settings, services, ask=ask)
    await server.start()
    channel = grpc.aio.insecure_channel(address)
    try:
        yield admin_pb2_grpc.AdminServiceStub(channel), address
    finally:
        await channel.close()
        await server.stop(grace=1)


def crawl(settings: Settings, services: Services, url: str, kb: str, *, timeout: float = 180, **request):
    """Crawl `url` into `kb` with a worker in this process and return the finished job."""
    import time

    from ragcord.crawls import start_crawl

    with running_worker(settings, services, threads=2):
        broker = build_broker(settings)
        enqueue = declare_actors(broker, settings).enqueue_page
        job = start_crawl(settings, services.jobs, enqueue, url=url, knowledge_base=kb, **request)
        deadline = time.monotonic() + timeout
        while not (job := services.jobs.get(job.id)).state.terminal:
            if time.monotonic() > deadline:
                raise TimeoutError(f"crawl {job.id} did not end in {timeout}s: {job}")
            time.sleep(0.1)
        broker.close()
    return job
