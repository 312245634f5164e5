"""Chunking a page's sections into passages that fit the embedder's window, each keeping its anchor.

all-MiniLM-L6-v2 reads 256 word pieces; ~180 words stay under that for English prose, so a chunk
is never cut by the model. `count_tokens` lets the embedder's own tokenizer replace the word count.
Fenced code blocks are kept whole when they fit and split on lines (each piece fenced again) when not;
other blocks split on lines, then sentences, and only then on words.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# Where one sentence ends and the next begins: after . ! or ?, before a capital, a digit, a quote, an opening
# bracket or inline code ("e.g. the" and "v1.2" stay whole). The one sentence rule of the chunker, the
# extractive answerer's quotes and the bot's message splits.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[`])")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_CHUNK_NAMESPACE = uuid.UUID("6f1d3c1e-8a2b-4c61-9d2f-6a1b7e0c5d42")

CountTokens = Callable[[str], int]
# However long a page title and its headings are, a chunk may hold this much (the window cuts the rest).
MIN_TOKENS = 48


@dataclass(frozen=True)
class Section:
    """One part of a page under one heading: the path of headings above it and the anchor landing on it."""

    heading_path: tuple[str, ...]
    anchor: str  # fragment id; "" = top of the page
    text: str  # blocks separated by blank lines; code as fenced blocks

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str  # "Section > Subsection", "" before the first heading
    text: str
    anchor: str = ""  # fragment id of the nearest enclosing heading, section or API entry; "" = top


def chunk_id(url: str, index: int) -> str:
    """Deterministic: re-indexing a page replaces its chunks instead of adding new ones."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{url}#{index}"))


def content_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:32]


def word_count(text: str) -> int:
    """The default token count: words, which stay under MiniLM's word pieces at the default limit."""
    return len(text.split())


def blocks(text: str, *, close_open_fence: bool = False) -> list[str]:
    """Blank-line separated paragraphs, each fenced code block one block of its own (blank lines and all).

    `close_open_fence`: a fence the text leaves open is closed (a chunk can end inside a code block).
    """
    out: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        if fence is not None:
            current.append(line)
            if line.strip().startswith(fence):
                out.append("\n".join(current))
                current, fence = [], None
            continue
        if match := _FENCE.match(line):
            if current:
                out.append("\n".join(current))
            current, fence = [line], match.group(1)
            continue
        if not line.strip():
            if current:
                out.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        out.append("\n".join(current) + (f"\n{fence}" if fence is not None and close_open_fence else ""))
    return [b for b in out if b.strip()]


class _Splitter:
    """Splits blocks over the limit at the best boundary that exists: line, sentence, then word."""

    def __init__(self, max_tokens: int, count_tokens: CountTokens) -> None:
        self.max_tokens = max_tokens
        self.count = count_tokens

    def split(self, block: str) -> list[str]:
        if self.count(block) <= self.max_tokens:
            return [block]
        lines = block.split("\n")
        if fence := _FENCE.match(lines[0]):
            return self._split_code(lines, fence.group(1))
        if len(lines) > 1:
            return self.pack([p for line in lines for p in self.split(line)], "\n", self.max_tokens)
        sentences = SENTENCE_END.split(block)
        if len(sentences) > 1:
            return self.pack([p for s in sentences for p in self.split(s)], " ", self.max_tokens)
        return self._words(block, self.max_tokens)

    def _split_code(self, lines: list[str], fence: str) -> list[str]:
        opening = lines[0].strip()
        closed = len(lines) > 1 and lines[-1].strip().startswith(fence)
        body = lines[1:-1] if closed else lines[1:]
        closing = fence
        budget = max(1, self.max_tokens - self.count(opening) - self.count(closing))
        pieces = [p for line in body for p in self._fit(line, budget)]
        return [f"{opening}\n{part}\n{closing}" for part in self.pack(pieces, "\n", budget)]

    def _fit(self, line: str, limit: int) -> list[str]:
        return [line] if self.count(line) <= limit else self._words(line, limit)

    def _words(self, text: str, limit: int) -> list[str]:
        if self.count is word_count:  # counted in words: runs of `limit` words (the loop below, in one step)
            words = text.split()
            return [" ".join(words[start : start + limit]) for start in range(0, len(words), limit)]
        out: list[str] = []
        current: list[str] = []
        for word in text.split():
            if current and self.count(" ".join([*current, word])) > limit:
                out.append(" ".join(current))
                current = []
            current.append(word)
        if current:
            out.append(" ".join(current))
        return out

    def pack(self, pieces: list[str], joiner: str, limit: int) -> list[str]:
        out: list[str] = []
        current: list[str] = []
        size = 0
        for piece in pieces:
            tokens = self.count(piece)
            if current and size + tokens > limit:
                out.append(joiner.join(current))
                current, size = [], 0
            current.append(piece)
            size += tokens
        if current:
            out.append(joiner.join(current))
        return [p for p in out if p.strip()]


def chunk_sections(
    sections: Iterable[Section],
    *,
    max_tokens: int = 180,
    count_tokens: CountTokens = word_count,
    budget: Callable[[Section], int] | None = None,
) -> list[Chunk]:
    """Passages of at most `max_tokens`, never spanning two sections, each with its heading and anchor.

    `budget(section)`, when given, lowers the limit per section: what the embedder's window leaves once
    the page title and the section's headings, embedded with every chunk, are counted.
    """
    chunks: list[Chunk] = []

    def limit_of(section: Section) -> int:
        return max(min(max_tokens, budget(section)), MIN_TOKENS) if budget is not None else max_tokens

    for section in merge_small_subsections(list(sections), limit_of, count_tokens):
        limit = limit_of(section)
        splitter = _Splitter(limit, count_tokens)
        parts = [part for block in blocks(section.text) for part in splitter.split(block)]
        for text in splitter.pack(parts, "\n\n", limit):
            chunks.append(Chunk(len(chunks), section.heading, text, section.anchor))
    return chunks


def merge_small_subsections(
    sections: list[Section], limit_of: Callable[[Section], int], count_tokens: CountTokens
) -> list[Section]:
    """A section with the small subsections that follow it, as one section, while the whole fits one chunk.

    API references cut an entry into tiny parts: gtk-doc's `g_rand_int_range ()` has its own "Parameters"
    and "Returns" sections, the last being "a random number". Apart, such a part is a chunk no search can
    place and no answer can quote; together they are the entry. Each part joins under its own heading (as a
    line of text) and the whole keeps the parent's heading and anchor, which is where a citation lands.
    A subsection of half a chunk or more keeps its own chunk (and its own anchor).
    """
    out: list[Section] = []
    for section in sections:
        if out:
            parent = out[-1]
            depth = len(parent.heading_path)
            limit = limit_of(parent)
            inside = depth > 0 and section.heading_path[:depth] == parent.heading_path
            if inside and len(section.heading_path) > depth:
                label = " › ".join(section.heading_path[depth:])
                first_line = section.text.lstrip().split("\n", 1)[0]
                if re.search(rf"\b{re.escape(section.heading_path[-1])}\b", first_line):
                    joined = f"{parent.text}\n\n{section.text}"  # an API entry's signature names it already
                else:
                    joined = f"{parent.text}\n\n{label}\n\n{section.text}"
                if count_tokens(section.text) * 2 < limit and count_tokens(joined) <= limit:
                    out[-1] = Section(parent.heading_path, parent.anchor, joined)
                    continue
        out.append(section)
    return out


def sections_from_markdown(markdown: str) -> list[Section]:
    """Sections of a markdown text (ATX headings; `#` inside code blocks is code), without anchors."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        if fence is None and (opened := _FENCE.match(line)):
            fence = opened.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None and (match := _HEADING.match(line)):
            sections.append(Section(tuple(t for _, t in path), "", "\n".join(lines)))
            level, title = len(match.group(1)), match.group(2).strip()
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
            lines = []
            continue
        lines.append(line)
    sections.append(Section(tuple(t for _, t in path), "", "\n".join(lines)))
    return [s for s in sections if s.text.strip()]


def chunk_markdown(markdown: str, *, max_words: int = 180) -> list[Chunk]:
    """Chunks of a markdown text (for callers that have markdown rather than extracted sections)."""
    return chunk_sections(sections_from_markdown(markdown), max_tokens=max_words)
