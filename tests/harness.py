"""Real components wired together for integration tests: a Dramatiq worker in this process and the
admin server on a free loopback port."""

from __future__ import annotations

import contextlib
import socket

import dramatiq
import grpc

from ragcord.bootstrap import Services, bootstrap
from ragcord.settings import Settings
from rpc.server import build_server
from rpc.v1 import admin_pb2_grpc
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.crawler import Fetcher, RobotsCache
from workers.pipeline import PageCrawler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_worker(settings: Settings, services: Services | None = None, threads: int = 2):
    """A real Dramatiq worker (Redis broker) consuming crawl pages in background threads."""
    services = services or bootstrap(settings)
    broker = build_broker(settings)
    fetcher = Fetcher(settings)
    crawler: PageCrawler | None = None

    def get_crawler() -> PageCrawler:
        return crawler

    actors = declare_actors(broker, settings, get_crawler)
    crawler = PageCrawler(
        settings,
        jobs=services.jobs,
        store=services.store,
        embedder=services.embedder,
        fetcher=fetcher,
        robots=RobotsCache(fetcher),
        enqueue=actors.enqueue_page,
    )
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
    worker.start()
    try:
        yield services
    finally:
        worker.stop(timeout=10_000)
        broker.close()
        fetcher.close()


@contextlib.asynccontextmanager
async def admin_api(settings: Settings, services: Services | None = None):
    """The admin server on a free port; yields (stub, address)."""
    address = f"127.0.0.1:{free_port()}"
    settings = settings.model_copy(update={"grpc_address": address})
    server, _ = await build_server(settings, services)
    await server.start()
    channel = grpc.aio.insecure_channel(address)
    try:
        yield admin_pb2_grpc.AdminServiceStub(channel), address
    finally:
        await channel.close()
        await server.stop(grace=1)
