"""The local embedder loads offline from its package by arguments alone, leaving the environment as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

# Runs in a fresh interpreter, so huggingface_hub reads its offline switch from this clean environment.
PROBE = """
import json, os, socket

attempts = []

def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network disabled in this test")

socket.getaddrinfo = refuse
socket.create_connection = refuse
socket.socket.connect = refuse
socket.socket.connect_ex = refuse

import sentence_transformers  # noqa: F401  (its own import sets sklearn's and torch's variables: not ours)

from ragcord.knowledge.embedders import LocalEmbedder

before = dict(os.environ)
embedder = LocalEmbedder()
vectors = embedder.embed(["How do I install the package?", "Installing the package", "Bananas are yellow"])
after = dict(os.environ)

import huggingface_hub.constants

print(json.dumps({
    "attempts": attempts,
    "added": sorted(set(after) - set(before)),
    "changed": sorted(k for k in before if after.get(k) != before[k]),
    "hub_offline_switch": huggingface_hub.constants.HF_HUB_OFFLINE,
    "dims": [len(v) for v in vectors],
    "norms": [sum(x * x for x in v) ** 0.5 for v in vectors],
    "similar": sum(a * b for a, b in zip(vectors[0], vectors[1])),
    "unrelated": sum(a * b for a, b in zip(vectors[0], vectors[2])),
}))
"""

SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM")


def test_local_embedder_loads_offline_without_touching_the_environment() -> None:
    # Given an environment with none of Hugging Face's offline switches and no network
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}

    # When a process loads the local embedder and embeds three sentences
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout.strip().splitlines()[-1])

    # Then it never tried the network, left os.environ as it found it, and was not switched offline by env
    assert probe["attempts"] == []
    assert probe["added"] == [] and probe["changed"] == []
    assert probe["hub_offline_switch"] is False
    # And it still embeds: 384 unit vectors, a paraphrase closer than an unrelated sentence
    assert probe["dims"] == [384, 384, 384]
    assert all(abs(n - 1.0) < 1e-3 for n in probe["norms"])
    assert probe["similar"] > probe["unrelated"] + 0.3


def test_embedding_nothing_does_not_load_the_model() -> None:
    from ragcord.knowledge.embedders import LocalEmbedder

    embedder = LocalEmbedder()

    assert embedder.embed([]) == []
    assert embedder._model is None


def test_chunks_of_code_heavy_pages_fit_the_models_window_with_their_title_and_headings():
    """180 words of shell or SQL are 400+ word pieces: chunks are sized by the model's own tokenizer."""
    from pathlib import Path

    from ragcord.knowledge.embedders import LocalEmbedder
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
    assert embedder._model is None  # counting never loads the model


def test_load_makes_the_local_embedder_ready_before_its_first_use():
    from ragcord.knowledge.embedders import LocalEmbedder, NoEmbedder

    embedder = LocalEmbedder()
    embedder.load()
    assert embedder._model is not None and embedder._tokenizer is not None
    NoEmbedder().load()  # nothing to load


def test_loading_the_model_draws_no_progress_bar_in_the_log():
    probe = "from ragcord.knowledge.embedders import LocalEmbedder\nLocalEmbedder().load()\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Loading weights" not in result.stderr and "it/s" not in result.stderr
