"""Running the synchronous core from asyncio adapters (gRPC servicer, Discord bot).

Work goes to a bounded thread pool of its kind (`Executors`): answering questions (model calls, which
can take seconds each) apart from the short Redis and store calls, so slow answers never make a GetJob
or a Discord handler wait for a thread. `install` makes the Redis/store pool the loop's default
executor (what `asyncio.to_thread` uses) and the answer pool what `iterate_in_thread` uses.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")
_DONE = object()


@dataclasses.dataclass
class Executors:
    """The process's thread pools, one per kind of blocking work."""

    io: ThreadPoolExecutor
    answer: ThreadPoolExecutor
    # A question's keyword search, run beside its query embedding (Retriever): one thread per question being
    # answered. Its own pool: an answer thread waits for it, so it must never queue behind answers.
    search: ThreadPoolExecutor

    @classmethod
    def create(cls, *, io_threads: int, answer_threads: int) -> Executors:
        return cls(
            io=ThreadPoolExecutor(io_threads, thread_name_prefix="ragcord-io"),
            answer=ThreadPoolExecutor(answer_threads, thread_name_prefix="ragcord-answer"),
            search=ThreadPoolExecutor(answer_threads, thread_name_prefix="ragcord-search"),
        )

    def shutdown(self) -> None:
        """Stop taking work; running calls finish in their threads (a cancelled stream: at its next item)."""
        self.io.shutdown(wait=False, cancel_futures=True)
        self.answer.shutdown(wait=False, cancel_futures=True)
        self.search.shutdown(wait=False, cancel_futures=True)


_installed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Executors] = weakref.WeakKeyDictionary()


def install(executors: Executors, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Route this loop's `asyncio.to_thread` calls to `executors.io`, answer streams to `executors.answer`."""
    loop = loop or asyncio.get_running_loop()
    if _installed.get(loop) is executors:
        return
    loop.set_default_executor(executors.io)
    _installed[loop] = executors


def installed(loop: asyncio.AbstractEventLoop | None = None) -> Executors | None:
    return _installed.get(loop or asyncio.get_running_loop())


async def run_in(
    executor: ThreadPoolExecutor | None, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """`asyncio.to_thread` on a chosen pool (None: the loop's default), keeping the caller's context."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(executor, call)


async def iterate_in_thread(
    make_iterator: Callable[[], Iterator[T]], *, executor: ThreadPoolExecutor | None = None
) -> AsyncIterator[T]:
    """Drive a blocking iterator in a worker thread and yield its items on the event loop.

    The thread comes from `executor`, else the installed answer pool, else the loop's default. When the
    consumer stops early (cancelled, closed, an error) the thread stops at the iterator's next item and
    closes it (a generator's `finally` runs there: a model's HTTP stream is closed), freeing the thread.
    """
    loop = asyncio.get_running_loop()
    if executor is None and (pools := installed(loop)) is not None:
        executor = pools.answer
    queue: asyncio.Queue[tuple[object, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[object, BaseException | None]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()

    def run() -> None:
        iterator = None
        try:
            iterator = make_iterator()
            for item in iterator:
                if stop.is_set():
                    break
                put((item, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((None, exc))
        else:
            put((_DONE, None))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    worker = loop.run_in_executor(executor, contextvars.copy_context().run, run)
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if worker.done():
            worker.result()
        else:
            worker.add_done_callback(_ignore_result)


def _ignore_result(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
