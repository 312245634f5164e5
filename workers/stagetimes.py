"""Where a worker's time goes, per stage of a page: for benchmarks and profiling, off by default.

With `RAGCORD_STAGE_TIMES_DIR` set, each worker process sums the wall and CPU seconds (of the thread doing the
work) of every stage over its pages, counts its Redis commands, and writes the totals as JSON to
`<dir>/stages-<pid>.json` (after a page at most every `DUMP_SECONDS`, and when the worker stops). Off, no
object of this module is built and a page costs nothing more.

Stages: `queue_wait` (a message's time in the queue, from when it was due), `redis` (job store, politeness
and copy-index calls), `fetch` (HTTP, robots.txt included), `extract`, `chunk`, `embed`, `store`, `enqueue`
(sending the children's messages), `message` (the whole actor call: what the stages leave is our own glue).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import dramatiq
from dramatiq.broker import MessageProxy

__all__ = ["STAGES", "StageTimes", "StageTimesMiddleware", "timed"]

STAGES = ("queue_wait", "redis", "fetch", "extract", "chunk", "embed", "store", "enqueue", "message")
DUMP_SECONDS = 0.5
T = TypeVar("T")


class StageTimes:
    """Summed wall and CPU seconds per stage, and counts, of one process; thread-safe."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self.redis_commands: Counter[str] = Counter()
        self.pages = 0
        self._lock = threading.Lock()
        self._last_dump = 0.0

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as `name`; stages must not nest (a nested one would be counted twice)."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, time.thread_time() - cpu)

    def add(self, name: str, wall: float, cpu: float = 0.0) -> None:
        with self._lock:
            self.wall[name] += wall
            self.cpu[name] += cpu
            self.calls[name] += 1

    def count_command(self, name: str) -> None:
        with self._lock:
            self.redis_commands[name] += 1

    def page_done(self) -> None:
        """One more message handled; writes the totals when the last write is `DUMP_SECONDS` old."""
        with self._lock:
            self.pages += 1
            due = time.monotonic() - self._last_dump >= DUMP_SECONDS
        if due:
            self.dump()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pid": os.getpid(),
                "messages": self.pages,
                "wall": dict(self.wall),
                "cpu": dict(self.cpu),
                "calls": dict(self.calls),
                "redis_commands": dict(self.redis_commands),
                "process_cpu": time.process_time(),
            }

    def dump(self) -> None:
        """Write the totals to `<directory>/stages-<pid>.json` (atomically: a reader never sees half)."""
        if self.directory is None:
            return
        with self._lock:
            self._last_dump = time.monotonic()
        target = self.directory / f"stages-{os.getpid()}.json"
        partial = target.with_suffix(".tmp")
        partial.write_text(json.dumps(self.snapshot()))
        partial.replace(target)

    def count_redis_commands(self, client: Any) -> None:
        """Count each command `client` (a redis.Redis; None: nothing) sends, by name; pipelines not."""
        if client is None:
            return
        send = client.execute_command

        def counted(*args: Any, **options: Any) -> Any:
            self.count_command(str(args[0]).split(" ")[0].upper() if args else "?")
            return send(*args, **options)

        client.execute_command = counted


def timed(inner: T, times: StageTimes, stage: str, methods: tuple[str, ...]) -> T:
    """`inner` with the calls of `methods` timed as `stage`; every other attribute passes through."""
    return cast("T", _Timed(inner, times, stage, frozenset(methods)))


class _Timed:
    def __init__(self, inner: Any, times: StageTimes, stage: str, methods: frozenset[str]) -> None:
        self._inner = inner
        self._times = times
        self._stage = stage
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self._methods or not callable(value):
            return value
        times, stage = self._times, self._stage

        def call(*args: Any, **kwargs: Any) -> Any:
            with times.stage(stage):
                return value(*args, **kwargs)

        return call


class StageTimesMiddleware(dramatiq.Middleware):
    """Times each message: its wait in the queue (from when it was due) and the whole actor call."""

    def __init__(self, times: StageTimes) -> None:
        self.times = times
        self._started = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        now_ms = time.time() * 1000
        due_ms = max(float(message.message_timestamp), float(message.options.get("eta", 0)))
        self.times.add("queue_wait", max(0.0, now_ms - due_ms) / 1000)
        self._started.at = (time.perf_counter(), time.thread_time())

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started = getattr(self._started, "at", None)
        if started is not None:
            self.times.add("message", time.perf_counter() - started[0], time.thread_time() - started[1])
            self._started.at = None
        self.times.page_done()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.times.dump()
