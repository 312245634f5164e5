"""Several pages' chunks embedded in one call (workers/batching.py): every page gets its own vectors."""

from __future__ import annotations

import threading
import time

import pytest

from workers.batching import CoalescingEmbedder


class SlowEmbedder:
    """Vectors that name their text; each call takes a while, so threads arriving meanwhile queue."""

    name = "slow"
    dim = 1
    window = 100

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def load(self) -> None:
        pass

    def embed(self, texts):
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(0.05)
            if self.fail_on is not None and self.fail_on in texts:
                raise RuntimeError("model broke")
            self.calls.append(list(texts))
            return [[float(text.split("-")[1])] for text in texts]
        finally:
            with self._lock:
                self.running -= 1


def embed_in_threads(embedder, pages):
    results, errors = {}, {}

    def one(page, texts):
        try:
            results[page] = embedder.embed(texts)
        except Exception as exc:  # noqa: BLE001 - the test reads it
            errors[page] = exc

    threads = [threading.Thread(target=one, args=(page, texts)) for page, texts in pages.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results, errors


def pages_of(count, chunks):
    return {page: [f"p{page}c{c}-{page * 100 + c}" for c in range(chunks)] for page in range(count)}


def test_pages_embedded_at_once_share_calls_and_each_gets_its_own_vectors():
    inner = SlowEmbedder()
    embedder = CoalescingEmbedder(inner)
    pages = pages_of(8, 3)

    results, errors = embed_in_threads(embedder, pages)

    assert not errors
    for page in pages:
        assert results[page] == [[float(page * 100 + c)] for c in range(3)]
    assert inner.most_at_once == 1  # one call at a time: they never compete for the cores
    assert len(inner.calls) < 8  # the pages that waited went together
    assert sorted(t for call in inner.calls for t in call) == sorted(t for ts in pages.values() for t in ts)


def test_a_lone_page_is_embedded_at_once_and_nothing_is_empty():
    inner = SlowEmbedder()
    embedder = CoalescingEmbedder(inner)
    assert embedder.embed([]) == []
    assert embedder.embed(["a-1", "b-2"]) == [[1.0], [2.0]]
    assert inner.calls == [["a-1", "b-2"]]
    assert (embedder.dim, embedder.window, embedder.name, embedder.count_tokens("x y")) == (1, 100, "slow", 2)


def test_calls_stay_within_max_texts():
    inner = SlowEmbedder()
    embedder = CoalescingEmbedder(inner, max_texts=4)

    results, errors = embed_in_threads(embedder, pages_of(6, 3))

    assert not errors and len(results) == 6
    assert all(len(call) <= 4 for call in inner.calls)


def test_a_failing_call_fails_every_page_in_it_and_the_next_pages_still_run():
    inner = SlowEmbedder(fail_on="p0c0-0")
    embedder = CoalescingEmbedder(inner)
    pages = pages_of(5, 2)

    results, errors = embed_in_threads(embedder, pages)

    assert 0 in errors and isinstance(errors[0], RuntimeError)
    assert set(results) | set(errors) == set(pages)
    with pytest.raises(RuntimeError):
        embedder.embed(["p0c0-0"])
    assert embedder.embed(["z-7"]) == [[7.0]]  # not stuck after a failure


def test_a_page_larger_than_a_call_is_embedded_over_several_in_order():
    inner = SlowEmbedder()
    embedder = CoalescingEmbedder(inner, max_texts=4)
    texts = [f"t{i}-{i}" for i in range(10)]

    assert embedder.embed(texts) == [[float(i)] for i in range(10)]
    assert [len(call) for call in inner.calls] == [4, 4, 2]


def test_small_pages_go_between_the_calls_of_a_large_one():
    inner = SlowEmbedder()
    entered, gate = threading.Event(), threading.Event()
    embed = inner.embed

    def first_call_waits(texts):
        entered.set()
        gate.wait(10)
        return embed(texts)

    inner.embed = first_call_waits
    embedder = CoalescingEmbedder(inner, max_texts=4)
    big = [f"big{i}-{i}" for i in range(40)]
    got = {}
    threads = [threading.Thread(target=lambda: got.setdefault(0, embedder.embed(big)))]
    threads[0].start()
    assert entered.wait(10)  # the large page's first call is running
    for p in range(1, 4):
        thread = threading.Thread(
            target=lambda p=p: got.setdefault(p, embedder.embed([f"small{p}-{p * 100}"]))
        )
        thread.start()
        threads.append(thread)
    while len(embedder._pending) < 4:  # the three small pages queued behind it
        time.sleep(0.01)
    gate.set()
    for thread in threads:
        thread.join(10)

    assert got[0] == [[float(i)] for i in range(40)]
    assert all(got[p] == [[float(p * 100)]] for p in range(1, 4))
    assert all(len(call) <= 4 for call in inner.calls)
    assert [t.split("-")[0][:5] for t in inner.calls[1]] == ["small", "small", "small", "big4"]
