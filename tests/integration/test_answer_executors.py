"""Slow answers in one process: they run on their own bounded pool, GetJob does not wait for them,
and a cancelled AskStream stops its model stream at the next chunk, freeing its thread.

Through the real gRPC server and client; the model is a seam that streams until the test releases it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import grpc

from ragcord.answering.service import AskService, build_ask_service
from ragcord.answering.types import Answer
from ragcord.bootstrap import bootstrap
from ragcord.knowledge.chunking import chunk_id
from ragcord.knowledge.stores import StoredChunk
from rpc.v1 import admin_pb2 as pb
from tests.harness import admin_api

URL = "http://docs.example/install"


class SlowModel:
    """A model that streams a chunk every 20 ms until released; counts the streams it is running."""

    name = "slow"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.closed = 0

    def answer(self, question, hits, conversation) -> Answer:
        self.release.wait()
        return Answer(text="done", citations=[], found=True)

    def stream(self, question, hits, conversation) -> Iterator[str | Answer]:
        with self.lock:
            self.running += 1
        try:
            yield "thinking"
            while not self.release.is_set():
                time.sleep(0.02)
                yield "."
            yield Answer(text="done", citations=[], found=True)
        finally:
            with self.lock:
                self.running -= 1
                self.closed += 1


async def wait_until(condition, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def indexed_services(settings):
    services = bootstrap(settings)
    chunk = StoredChunk(
        id=chunk_id(URL, 0),
        url=URL,
        title="Install",
        heading="",
        chunk_index=0,
        text="Install quillstack with pip install quillstack in a virtual environment.",
        content_hash="h",
        indexed_at=1.0,
    )
    services.store.replace_page("docs", URL, [chunk])
    return services


def with_model(services, model: SlowModel) -> AskService:
    real = build_ask_service(services)
    return AskService(
        retriever=real.retriever,
        answerer=model,
        memory=real.memory,
        default_knowledge_base="docs",
    )


ASK = pb.AskRequest(question="How do I install quillstack?", knowledge_base="docs")


async def test_get_job_answers_while_slow_answers_hold_every_answer_thread(make_settings):
    settings = make_settings(answer_threads=2, io_threads=4)
    services = indexed_services(settings)
    model = SlowModel()
    job = services.jobs.create(knowledge_base="docs", url="http://docs.example/", max_pages=5, max_depth=2)
    async with admin_api(settings, services, ask=with_model(services, model)) as (stub, _):
        streams = [stub.AskStream(ASK) for _ in range(2)]
        for stream in streams:
            assert (await stream.read()).delta == "thinking"
        await wait_until(lambda: model.running == 2)
        streams.append(stub.AskStream(ASK))

        # Every answer thread is busy (a third question waits for one); admin calls still answer.
        got = await asyncio.wait_for(stub.GetJob(pb.GetJobRequest(job_id=job.id)), 60)
        listed = await asyncio.wait_for(stub.ListJobs(pb.ListJobsRequest()), 60)
        assert got.id == job.id and [j.id for j in listed.jobs] == [job.id]
        assert model.running == 2 and model.closed == 0

        # Cancelling the two streams stops their model streams and frees their threads for the third.
        for stream in streams[:2]:
            stream.cancel()
        await wait_until(lambda: model.closed == 2)
        assert (await streams[2].read()).delta == "thinking"
        model.release.set()
        messages = []
        while (message := await streams[2].read()) is not grpc.aio.EOF:
            messages.append(message)
        assert messages[-1].answer.text == "done"
    assert model.running == 0 and model.closed == 3
    services.close()


async def test_a_consumer_that_stops_early_stops_the_producer_thread_at_its_next_item():
    from concurrent.futures import ThreadPoolExecutor

    from ragcord.aio import iterate_in_thread

    pool = ThreadPoolExecutor(1)
    model = SlowModel()

    def answer_stream():
        return model.stream("q", [], None)

    async for item in iterate_in_thread(answer_stream, executor=pool):
        assert item == "thinking"
        break  # the consumer leaves (what a cancelled handler does)
    await wait_until(lambda: model.closed == 1)
    # The one thread is free: the next stream runs to its end on it.
    model.release.set()
    items = [item async for item in iterate_in_thread(answer_stream, executor=pool)]
    assert isinstance(items[-1], Answer) and model.running == 0
    pool.shutdown()
