"""Embedding several pages' chunks in one call: the worker threads of a process share one embedder.

A thread that wants vectors while another thread's call is running queues its texts; when that call ends,
one of the waiting threads embeds every queued text in one call and hands each thread its own vectors. No
thread waits for a batch to fill (a lone page is embedded at once), only for the call in progress, which it
would otherwise have competed with for the same cores: a local model already uses every core per call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragcord.knowledge.embedders import Embedder

__all__ = ["CoalescingEmbedder"]


@dataclass
class _Request:
    texts: Sequence[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: list[list[float]] | None = None  # set once every text has its vector
    error: BaseException | None = None
    got: list[list[float]] = field(default_factory=list)  # vectors of the texts embedded so far


class CoalescingEmbedder:
    """`inner` behind one call at a time per process, the texts of threads that waited joined into it."""

    def __init__(self, inner: Embedder, *, max_texts: int = 128) -> None:
        """`max_texts`: at most this many texts per call. A page with more is embedded over several calls,
        and pages that come meanwhile go in between: a whole-manual page does not hold the others up."""
        self.inner = inner
        self.name = inner.name
        self.max_texts = max_texts
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._running = False
        self.calls = 0  # calls made to `inner` (tests and benchmarks read it)

    @property
    def window(self) -> int | None:
        return self.inner.window

    @property
    def dim(self) -> int | None:
        return self.inner.dim

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def load(self) -> None:
        self.inner.load()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        request = _Request(texts)
        with self._lock:
            self._pending.append(request)
            lead = not self._running
            if lead:
                self._running = True
        while not lead:
            request.done.wait()
            with self._lock:  # answered, or woken to lead: the previous call ended with this one queued
                if request.vectors is not None or request.error is not None:
                    break
                lead = not self._running
                if lead:
                    self._running = True
                else:  # another thread took the lead first (and may take this request into its call)
                    request.done.clear()
        if lead:
            self._lead(request)
        return self._result(request)

    def _lead(self, own: _Request) -> None:
        """Call the embedder for the queued requests until `own` is answered; then hand the lead to a
        waiting thread, if any, so this one returns its page's vectors now."""
        while True:
            with self._lock:
                batch: list[tuple[_Request, int]] = []  # (request, how many of its next texts)
                room = self.max_texts
                for queued in self._pending:
                    if room == 0:
                        break
                    take = min(len(queued.texts) - len(queued.got), room)
                    batch.append((queued, take))
                    room -= take
                if not batch:
                    self._running = False
                    return
            self._call(batch)
            with self._lock:
                if own.vectors is None and own.error is None:
                    continue  # (a call full of earlier requests left this one out, or part of it)
                self._running = False
                if self._pending:
                    self._pending[0].done.set()
                return

    def _call(self, batch: list[tuple[_Request, int]]) -> None:
        texts = [
            t for request, take in batch for t in request.texts[len(request.got) : len(request.got) + take]
        ]
        try:
            vectors = self.inner.embed(texts)
            if len(vectors) != len(texts):
                raise RuntimeError(f"the embedder returned {len(vectors)} vectors for {len(texts)} texts")
        except BaseException as exc:  # noqa: BLE001 - every waiting page gets the error, none hangs
            with self._lock:
                for request, _ in batch:
                    request.error = exc
                    self._pending.remove(request)
                    request.done.set()
            return
        with self._lock:
            self.calls += 1
            start = 0
            for request, take in batch:
                request.got.extend(vectors[start : start + take])
                start += take
                self._pending.remove(request)
                if len(request.got) == len(request.texts):
                    request.vectors = request.got
                    request.done.set()
                else:  # the rest of a large page waits behind the pages that came meanwhile
                    self._pending.append(request)

    @staticmethod
    def _result(request: _Request) -> list[list[float]]:
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors
