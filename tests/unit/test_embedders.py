"""The local embedder: MiniLM on ONNX Runtime, offline, without torch, faithful to the torch model."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragcord.knowledge.embedders import LocalEmbedder, NoEmbedder, VectorCache
from tests.conftest import ROOT

REFERENCE_FILE = Path(__file__).parents[1] / "fixtures" / "embeddings" / "minilm_reference.json"
REFERENCE = json.loads(REFERENCE_FILE.read_text())

# Runs in a fresh interpreter: what loading and embedding import, touch and print is the process's own.
PROBE = """
import json, os, socket, sys

attempts = []

def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network disabled in this test")

socket.getaddrinfo = refuse
socket.create_connection = refuse
socket.socket.connect = refuse
socket.socket.connect_ex = refuse

from ragcord.knowledge.embedders import LocalEmbedder

before = dict(os.environ)
embedder = LocalEmbedder()
embedder.load()
vectors = embedder.embed(["How do I install the package?", "Installing the package", "Bananas are yellow"])
after = dict(os.environ)

print(json.dumps({
    "attempts": attempts,
    "added": sorted(set(after) - set(before)),
    "changed": sorted(k for k in before if after.get(k) != before[k]),
    "heavy": sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules),
    "dims": [len(v) for v in vectors],
    "norms": [sum(x * x for x in v) ** 0.5 for v in vectors],
    "similar": sum(a * b for a, b in zip(vectors[0], vectors[1])),
    "unrelated": sum(a * b for a, b in zip(vectors[0], vectors[2])),
}))
"""


def test_local_embedder_loads_offline_without_torch_and_without_touching_the_environment() -> None:
    # When a fresh process loads the local embedder and embeds three sentences, with the network refused
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout.strip().splitlines()[-1])

    # Then it never tried the network, left os.environ as it found it, and imported no torch stack
    assert probe["attempts"] == []
    assert probe["added"] == [] and probe["changed"] == []
    assert probe["heavy"] == []
    # And it embeds: 384 unit vectors, a paraphrase closer than an unrelated sentence
    assert probe["dims"] == [384, 384, 384]
    assert all(abs(n - 1.0) < 1e-3 for n in probe["norms"])
    assert probe["similar"] > probe["unrelated"] + 0.3
    # And it logs no progress bar while loading
    assert "it/s" not in run.stderr


def test_vectors_agree_with_the_torch_model_they_replace() -> None:
    """The int8 export against the original model's own vectors (tests/fixtures/embeddings/make_reference.py):
    every text, the empty one and one past the 256-token window included."""
    reference = np.array(
        [np.frombuffer(base64.b64decode(v), dtype=np.float32) for v in REFERENCE["vectors_float32_base64"]]
    )
    vectors = np.array(LocalEmbedder().embed(REFERENCE["texts"]))

    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() > 0.99, dict(zip(REFERENCE["texts"], cosines.round(4), strict=True))
    # And the neighbours each text finds are the torch model's
    for row in range(len(reference)):
        ours = np.argsort(-(vectors @ vectors[row]))[:3]
        assert ours.tolist() == np.argsort(-(reference @ reference[row]))[:3].tolist()


def test_folding_the_weights_at_load_changes_no_vector() -> None:
    """Folded once at load or turned back into floats in every call, the int8 weights are the same floats:
    the vectors stored by an embedder of either kind match the questions of the other."""
    texts = REFERENCE["texts"]

    folded = np.array(LocalEmbedder(fold_weights=True, cached_texts=0).embed(texts))
    unfolded = np.array(LocalEmbedder(fold_weights=False, cached_texts=0).embed(texts))

    assert np.abs(folded - unfolded).max() < 1e-5
    # And a setting chooses it
    from ragcord.knowledge.embedders import build_embedder
    from ragcord.settings import Settings

    unfolding = build_embedder(Settings(_env_file=None, embed_fold_weights=False))
    assert isinstance(unfolding, LocalEmbedder) and not unfolding.fold_weights


def count_batches(embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the loaded embedder's model is asked from now on, as they come."""
    seen: list[int] = []
    run = embedder._session.run

    class CountingSession:
        def run(self, outputs, feeds):
            seen.append(feeds["input_ids"].shape[0])
            return run(outputs, feeds)

    monkeypatch.setattr(embedder, "_session", CountingSession())
    return seen


def test_identical_texts_are_embedded_once_and_answered_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = LocalEmbedder(batch_size=2)
    embedder.load()
    seen = count_batches(embedder, monkeypatch)
    texts = ["a short one", "the same text", "a much longer text than the others, " * 5, "the same text"]

    vectors = embedder.embed(texts)

    assert sum(seen) == 3  # three distinct texts, in batches of at most two
    assert max(seen) <= 2
    assert vectors[1] == vectors[3]
    alone = LocalEmbedder().embed([texts[2]])[0]
    assert float(np.dot(alone, vectors[2])) > 0.9999  # padding beside shorter texts changes nothing


def test_embedding_nothing_does_not_load_the_model() -> None:
    embedder = LocalEmbedder()

    assert embedder.embed([]) == []
    assert embedder._session is None


def test_chunks_of_code_heavy_pages_fit_the_models_window_with_their_title_and_headings():
    """180 words of shell or SQL are 400+ word pieces: chunks are sized by the model's own tokenizer."""
    from ragcord.settings import Settings
    from workers.extraction import extract_html
    from workers.pipeline import PageCrawler

    embedder = LocalEmbedder()
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    crawler = PageCrawler.__new__(PageCrawler)  # only the chunking half: no Redis, store or fetcher
    crawler.settings, crawler.embedder = Settings(_env_file=None), embedder
    measured = 0
    for path in sorted(
        [*(fixtures / "extraction").rglob("*.html"), *(fixtures / "generators").rglob("*.html")]
    ):
        page = extract_html(path.read_bytes(), f"http://d.example/{path.name}")
        for chunk in crawler._chunks(page):
            tokens = embedder.count_tokens(PageCrawler.embedded_text(page.title, chunk)) + 2  # [CLS], [SEP]
            assert tokens <= embedder.window, (path.name, chunk.heading, tokens)
            measured += 1
    assert measured > 100
    assert embedder._session is None  # counting never loads the model


def test_load_makes_the_local_embedder_ready_before_its_first_use():
    embedder = LocalEmbedder()
    embedder.load()
    assert embedder._session is not None and embedder._tokenizer is not None
    NoEmbedder().load()  # nothing to load


def test_another_export_of_the_model_can_be_named_by_setting(tmp_path: Path) -> None:
    from ragcord.knowledge.embedders import _packaged_model, build_embedder
    from ragcord.settings import Settings

    copy = tmp_path / "minilm.onnx"
    copy.write_bytes(_packaged_model().read_bytes())
    embedder = build_embedder(Settings(_env_file=None, local_model_path=copy, embed_threads=1))
    assert isinstance(embedder, LocalEmbedder) and embedder.model_path == copy and embedder.threads == 1
    assert len(embedder.embed(["hello"])[0]) == 384


def test_a_model_call_holds_at_most_its_token_budget_of_padded_tokens():
    """Activations grow with batch x length^2: long chunks go in small batches, short ones in full ones."""
    from ragcord.knowledge.embedders import MAX_BATCH_TOKENS

    embedder = LocalEmbedder(batch_size=32)
    lengths = [256] * 40 + [20] * 70 + [100] * 5

    batches = list(embedder._batches(lengths))

    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))  # each text once
    for batch in batches:
        assert len(batch) <= 32
        assert len(batch) * max(lengths[i] for i in batch) <= MAX_BATCH_TOKENS
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)  # padded to its last
    assert max(len(b) for b in batches) == 32 and min(len(b) for b in batches if lengths[b[0]] == 256) >= 1


def test_an_idle_embedder_gives_its_model_back_and_reloads_on_the_next_call():
    """A worker after a crawl: no call for `idle_unload_seconds`, the session (model + arena) is dropped."""
    import time

    embedder = LocalEmbedder(idle_unload_seconds=0.2)
    before = embedder.embed(["how do I create a virtual environment"])[0]
    try:
        deadline = time.monotonic() + 30
        while embedder._session is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert embedder._session is None

        after = embedder.embed(["how do I create a virtual environment"])[0]

        assert embedder._session is not None
        assert float(np.dot(before, after)) > 0.9999
    finally:
        embedder.close()


def test_loading_at_start_checks_the_model_and_an_idle_unloading_embedder_holds_none_after() -> None:
    """`ragcord serve`'s processes call load() at start: a broken model fails there, and with the idle
    unload on (the default) no process holds a model until its first call."""
    embedder = LocalEmbedder(idle_unload_seconds=60)
    try:
        embedder.load()
        assert embedder._session is None and len(embedder._cache) == 0

        embedder.embed(["how do I retry a task"])
        assert embedder._session is not None
    finally:
        embedder.close()

    broken = LocalEmbedder(model_path=Path("/nonexistent/model.onnx"), idle_unload_seconds=60)
    with pytest.raises(Exception, match="model.onnx"):
        broken.load()


def test_an_embedder_kept_for_the_process_life_starts_no_unloader():
    embedder = LocalEmbedder(idle_unload_seconds=0)
    embedder.load()
    assert embedder._unloader is None
    assert embedder.unload() is True and embedder.unload() is False  # an explicit unload still works


def test_a_text_embedded_before_is_answered_from_the_cache_with_the_same_vector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embedder = LocalEmbedder(cached_texts=8)
    first = embedder.embed(["how do I retry a task", "a quoted passage"])
    seen = count_batches(embedder, monkeypatch)

    again = embedder.embed(["a quoted passage", "a new passage", "how do I retry a task"])

    assert seen == [1]  # only the new text reached the model
    assert again[0] == first[1] and again[2] == first[0]  # bit for bit, as computed the first time
    assert again[1] == LocalEmbedder(cached_texts=0).embed(["a new passage"])[0]


def test_the_vector_cache_keeps_only_the_most_recently_used_texts() -> None:
    cache = VectorCache(2)
    cache.put({"a": [1.0, 0.0], "b": [0.0, 1.0]})
    assert cache.get(["a"]) == {"a": [1.0, 0.0]}  # a is now the most recent

    cache.put({"c": [0.5, 0.5]})

    assert len(cache) == 2
    assert cache.get(["a", "b", "c"]) == {"a": [1.0, 0.0], "c": [0.5, 0.5]}
    assert VectorCache(0).get(["a"]) == {}


def test_unloading_the_model_forgets_the_cached_vectors() -> None:
    embedder = LocalEmbedder(cached_texts=8)
    embedder.embed(["how do I retry a task"])

    embedder.unload()

    assert len(embedder._cache) == 0
    embedder.embed(["how do I retry a task"])
    assert embedder._session is not None  # the question after an idle spell reloads the model
