"""Answers as Discord messages: citations as links, and splitting at 2000 characters without breaking
a code block or a link."""

from __future__ import annotations

import re

from ragcord.answering.types import Answer

LIMIT = 2000
_FENCE = "```"
_ATOM = re.compile(r"\[[^\]\n]*\]\(<?[^)\s]*>?\)|\S+")  # a markdown link is never split
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def link_title(title: str) -> str:
    """A title that cannot close a markdown link early."""
    return title.replace("[", "(").replace("]", ")").strip() or "source"


def format_answer(answer: Answer) -> str:
    """The answer, then its sources as `[n] [Title](<url>)` links (angle brackets: no previews)."""
    if not answer.citations:
        return answer.text
    sources = "\n".join(f"[{c.number}] [{link_title(c.title)}](<{c.url}>)" for c in answer.citations)
    heading = "**Sources**" if answer.found else "**Closest pages**"
    return f"{answer.text}\n\n{heading}\n{sources}"


def _blocks(text: str) -> list[str]:
    """Paragraphs, with each fenced code block kept as one block."""
    blocks: list[str] = []
    current: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if line.strip().startswith(_FENCE):
            if not in_code and current and any(c.strip() for c in current):
                blocks.append("\n".join(current))
                current = []
            in_code = not in_code
            current.append(line)
            if not in_code:
                blocks.append("\n".join(current))
                current = []
            continue
        if not in_code and not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _split_code(block: str, limit: int) -> list[str]:
    lines = block.split("\n")
    opener = lines[0].strip() if lines[0].strip().startswith(_FENCE) else _FENCE
    body = lines[1:-1] if lines[-1].strip().startswith(_FENCE) else lines[1:]
    parts: list[str] = []
    current: list[str] = []
    budget = limit - len(opener) - len(_FENCE) - 2
    for line in body:
        while len(line) > budget:  # a single enormous line
            if current:
                parts.append("\n".join(current))
                current = []
            parts.append(line[:budget])
            line = line[budget:]
        if current and len("\n".join([*current, line])) > budget:
            parts.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        parts.append("\n".join(current))
    return [f"{opener}\n{part}\n{_FENCE}" for part in parts]


def _split_prose(block: str, limit: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE.split(block):
        units = [sentence] if len(sentence) <= limit else _ATOM.findall(sentence)
        for unit in units:
            unit = unit[:limit]  # only a single word longer than a message is cut
            candidate = f"{current} {unit}" if current else unit
            if len(candidate) > limit:
                pieces.append(current)
                current = unit
            else:
                current = candidate
    if current:
        pieces.append(current)
    return pieces


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    """Messages of at most `limit` characters, split at paragraphs, then sentences, then words."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    for block in _blocks(text):
        if len(block) <= limit:
            pieces.append(block)
        elif block.lstrip().startswith(_FENCE):
            pieces.extend(_split_code(block, limit))
        else:
            pieces.extend(_split_prose(block, limit))
    messages: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}\n\n{piece}" if current else piece
        if len(candidate) > limit:
            messages.append(current)
            current = piece
        else:
            current = candidate
    if current:
        messages.append(current)
    return messages


def shorten(text: str, limit: int = 90) -> str:
    """A thread name: the question on one line, cut at a word."""
    text = " ".join(text.split()) or "Question"
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
