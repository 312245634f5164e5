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
    vectors: list[list[float]] | None = None
    error: BaseException | None = None


class CoalescingEmbedder:
    """`inner` behind one call at a time per process, the texts of threads that waited joined into it."""

    def __init__(self, inner: Embedder, *, max_texts: int = 512) -> None:
        """`max_texts`: at most this many texts per call (a single request larger than it goes alone)."""
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
                batch: list[_Request] = []
                size = 0
                for queued in self._pending:
                    if batch and size + len(queued.texts) > self.max_texts:
                        break
                    batch.append(queued)
                    size += len(queued.texts)
                del self._pending[: len(batch)]
                if not batch:
                    self._running = False
                    return
            self._call(batch)
            with self._lock:
                if own.vectors is None and own.error is None:
                    continue  # (a call full of earlier requests left this one out)
                self._running = False
                if self._pending:
                    self._pending[0].done.set()
                return

    def _call(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        try:
            vectors = self.inner.embed(texts)
            if len(vectors) != len(texts):
                raise RuntimeError(f"the embedder returned {len(vectors)} vectors for {len(texts)} texts")
        except BaseException as exc:  # noqa: BLE001 - every waiting page gets the error, none hangs
            with self._lock:
                for request in batch:
                    request.error = exc
                    request.done.set()
            return
        with self._lock:
            self.calls += 1
            start = 0
            for request in batch:
                request.vectors = vectors[start : start + len(request.texts)]
                start += len(request.texts)
                request.done.set()

    @staticmethod
    def _result(request: _Request) -> list[list[float]]:
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors
