"""Heading-aware chunking of a page's markdown into passages that fit the embedder's window.

all-MiniLM-L6-v2 reads 256 word pieces; ~180 words stay under that for English prose, so a chunk
is never cut by the model. Fenced code blocks are kept whole when they fit and split on lines when not.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[`])")
_CHUNK_NAMESPACE = uuid.UUID("6f1d3c1e-8a2b-4c61-9d2f-6a1b7e0c5d42")


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str  # "Section > Subsection", "" before the first heading
    text: str


def chunk_id(url: str, index: int) -> str:
    """Deterministic: re-indexing a page replaces its chunks instead of adding new ones."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{url}#{index}"))


def content_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:32]


def _words(text: str) -> int:
    return len(text.split())


def _blocks(lines: list[str]) -> list[str]:
    """Paragraphs and fenced code blocks of one section."""
    blocks: list[str] = []
    current: list[str] = []
    fence: str | None = None
    for line in lines:
        stripped = line.strip()
        if fence is not None:
            current.append(line)
            if stripped.startswith(fence):
                blocks.append("\n".join(current))
                current, fence = [], None
            continue
        if stripped.startswith(("```", "~~~")):
            if current:
                blocks.append("\n".join(current))
            current, fence = [line], stripped[:3]
            continue
        if not stripped:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return [b for b in blocks if b.strip()]


def _split_long(block: str, limit: int) -> list[str]:
    """Split one block over `limit` words: code on lines, prose on sentences, then on words."""
    if block.lstrip().startswith(("```", "~~~")):
        pieces = block.split("\n")
    else:
        pieces = _SENTENCE_END.split(block)
    out: list[str] = []
    current: list[str] = []
    joiner = "\n" if "\n" in block and block.lstrip().startswith(("```", "~~~")) else " "
    for piece in pieces:
        if _words(piece) > limit:
            words = piece.split()
            if current:
                out.append(joiner.join(current))
                current = []
            out.extend(" ".join(words[i : i + limit]) for i in range(0, len(words), limit))
            continue
        if current and _words(joiner.join([*current, piece])) > limit:
            out.append(joiner.join(current))
            current = []
        current.append(piece)
    if current:
        out.append(joiner.join(current))
    return [p for p in out if p.strip()]


def chunk_markdown(markdown: str, *, max_words: int = 180) -> list[Chunk]:
    sections: list[tuple[str, list[str]]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    heading = ""
    in_fence = False
    for line in markdown.splitlines():
        if line.strip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            sections.append((heading, lines))
            level, title = len(match.group(1)), match.group(2).strip()
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
            heading = " > ".join(t for _, t in path)
            lines = []
        else:
            lines.append(line)
    sections.append((heading, lines))

    chunks: list[Chunk] = []
    for section_heading, section_lines in sections:
        current: list[str] = []
        for block in _blocks(section_lines):
            parts = _split_long(block, max_words) if _words(block) > max_words else [block]
            for part in parts:
                if current and _words("\n\n".join([*current, part])) > max_words:
                    chunks.append(Chunk(len(chunks), section_heading, "\n\n".join(current)))
                    current = []
                current.append(part)
        if current:
            chunks.append(Chunk(len(chunks), section_heading, "\n\n".join(current)))
    return chunks
