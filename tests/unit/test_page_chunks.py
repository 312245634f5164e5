"""A page's chunks in the worker (workers/pipeline.page_chunks): each text's tokens counted once."""

from __future__ import annotations

from collections import Counter

from ragcord.knowledge.chunking import Section, chunk_sections
from ragcord.settings import Settings
from workers.extraction import ExtractedPage
from workers.pipeline import page_chunks


class CountingEmbedder:
    """Words as tokens, with a window; remembers every text it was asked to count."""

    name = "counting"
    dim = 2
    window = 64

    def __init__(self) -> None:
        self.counted: Counter[str] = Counter()

    def count_tokens(self, text: str) -> int:
        self.counted[text] += 1
        return len(text.split())

    def load(self) -> None:
        pass

    def embed(self, texts):
        return [[0.0, 1.0] for _ in texts]


def a_page() -> ExtractedPage:
    long_paragraph = " ".join(f"word{i}." for i in range(150))
    sections = [
        Section(("Guide",), "guide", "Intro paragraph.\n\n" + long_paragraph),
        Section(("Guide", "Parameters"), "params", "x: the value"),
        Section(("Guide", "Returns"), "returns", "a number"),
        Section(("Reference",), "ref", "\n".join(f"line {i} of a table" for i in range(40))),
    ]
    return ExtractedPage(title="The Page", canonical=None, links=[], sections=sections)


def test_chunks_are_those_of_the_chunker_with_each_text_counted_once():
    embedder = CountingEmbedder()
    settings = Settings(_env_file=None, chunk_tokens=48)
    page = a_page()

    chunks = page_chunks(page, embedder, settings)

    plain = CountingEmbedder()
    expected = chunk_sections(
        page.sections,
        max_tokens=48,
        count_tokens=plain.count_tokens,
        budget=lambda s: 64 - 4 - 2 - (len(s.heading.split()) if s.heading else 0),
    )
    assert [(c.heading, c.text, c.anchor) for c in chunks] == [
        (c.heading, c.text, c.anchor) for c in expected
    ]
    assert len(chunks) > 3
    assert max(embedder.counted.values()) == 1
    assert max(plain.counted.values()) > 1  # the chunker alone counts some texts again
