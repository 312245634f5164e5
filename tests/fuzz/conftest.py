"""The admin server for fuzzing: the real one (build_server: auth, metrics, servicer, real Redis, real
LanceDB), run on its own event loop in a thread so hypothesis drives it with the plain blocking client.

No worker runs: a StartCrawl the fuzzer gets accepted only writes its job and one message onto the test's
own Dramatiq queue in Redis (`<prefix>-dramatiq`), which nothing consumes and the key_prefix fixture
deletes; the tests cancel those jobs at the end. So a valid-looking public URL is never fetched, and the
path from the request to the queue is the production one (nothing recorded or faked)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import grpc
from pydantic import SecretStr

from ragcord.bootstrap import Services, bootstrap
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk
from ragcord.settings import Settings
from rpc.v1 import admin_pb2_grpc
from tests.harness import admin_api

TOKEN = "fuzz-token-0123456789"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def seed_docs(services: Services) -> None:
    """A knowledge base `docs` with one page, so Ask, ListSources and GetSource have something."""
    url = "https://docs.example.com/install.html"
    text = "Install the package with pip install quillstack, then run quillstack init in your project."
    services.store.replace_page(
        "docs",
        url,
        [
            StoredChunk(
                id=chunk_id(url, 0),
                url=url,
                title="Install",
                heading="Install",
                chunk_index=0,
                text=text,
                content_hash="h",
                indexed_at=1.0,
            )
        ],
    )


@contextlib.contextmanager
def server_in_thread(settings: Settings) -> Iterator[tuple[str, Services]]:
    """The admin server on a free loopback port, served by a thread's event loop; yields its address."""
    settings = settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    services = bootstrap(settings)
    seed_docs(services)
    loop = asyncio.new_event_loop()
    started: list[str] = []
    ready = threading.Event()
    stop = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        async with admin_api(settings, services) as (_, address):
            started.append(address)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="fuzzed-admin-server", daemon=True)
    thread.start()
    ready.wait(60)
    if failure or not started:
        raise RuntimeError(f"the admin server did not start: {failure}")
    try:
        yield started[0], services
    finally:
        stop.set()
        thread.join(30)
        services.close()


def stub_for(address: str) -> tuple[grpc.Channel, admin_pb2_grpc.AdminServiceStub]:
    channel = grpc.insecure_channel(
        address,
        options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
    )
    return channel, admin_pb2_grpc.AdminServiceStub(channel)
