"""Answers as Discord messages: citations as links, and splitting at 2000 characters without breaking
a code block or a link."""

from __future__ import annotations

import re

from ragcord.answering.types import Answer
from ragcord.knowledge.chunking import SENTENCE_END, blocks

LIMIT = 2000
_FENCE = "```"
_ATOM = re.compile(r"\[[^\]\n]*\]\(<?[^)\s]*>?\)|\S+")  # a markdown link is never split


# Mentions in documentation text (@everyone, @here, <@user>, <@!user>, <@&role>, <#channel>): shown as
# text, never as a ping or a mention pill (messages are also sent with allowed_mentions none).
_MENTION = re.compile(r"(?<!\\)(@(?:everyone|here)\b|<(?:@[!&]?|#)\d+>)")
# A masked link `[text](url)` in crawled text could hide where it goes: it is shown as plain text.
_MASKED_LINK = re.compile(r"\]\(")


def neutralize_mentions(text: str) -> str:
    """`@everyone` -> `\\@everyone`, `<@123>` -> `\\<@123>`: Discord shows them literally."""
    return _MENTION.sub(lambda m: "\\" + m.group(0), text)


def link_title(title: str, limit: int = 200) -> str:
    """A title that cannot close a markdown link early, nor mention anyone, nor fill a message."""
    title = " ".join(title.replace("[", "(").replace("]", ")").split())
    if len(title) > limit:
        title = title[: limit - 1].rsplit(" ", 1)[0] + "…"
    return neutralize_mentions(title) or "source"


_INLINE_CODE = re.compile(r"(`+)[^`\n]*?\1")
_STRONG = re.compile(r"\*\*(?=\S)[^*\n]+?(?<=\S)\*\*")
# Characters Discord reads as formatting in running text: emphasis, strike, spoiler; `_` only at a word's
# edge (Discord leaves `snake_case` alone but underlines `__init__`).
_ACTIVE = re.compile(r"[*~|]|(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])")
_LINE_START = re.compile(r"^(\s*)(#{1,3}\s|-#\s|>)")


def _escaped(match: re.Match[str]) -> str:
    return "".join("\\" + c for c in match.group(0))


def _escape_prose(text: str) -> str:
    text = _MASKED_LINK.sub("]\\(", neutralize_mentions(text))
    out: list[str] = []
    position = 0
    for strong in _STRONG.finditer(text):  # **bold** stays bold: the answerers' own emphasis
        out.append(_ACTIVE.sub(_escaped, text[position : strong.start()]))
        out.append(strong.group(0))
        position = strong.end()
    out.append(_ACTIVE.sub(_escaped, text[position:]))
    return "".join(out)


def escape_markdown(text: str) -> str:
    """Documentation text as Discord should show it: code fences and `inline code` as they are, and the
    characters Discord would read as formatting in the prose around them escaped (`*args`, `__init__`)."""
    lines: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        if line.strip().startswith(_FENCE):
            in_fence = not in_fence
            lines.append(line)
            continue
        if in_fence:
            lines.append(line)
            continue
        line = _LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", line)
        pieces: list[str] = []
        position = 0
        for code in _INLINE_CODE.finditer(line):
            pieces.append(_escape_prose(line[position : code.start()]))
            pieces.append(code.group(0))
            position = code.end()
        pieces.append(_escape_prose(line[position:]))
        lines.append("".join(pieces))
    return "\n".join(lines)


def format_answer(answer: Answer) -> str:
    """The answer (escaped for Discord), then its sources as `[n] [Title](<url>)` links (no previews)."""
    text = escape_markdown(answer.text)
    if not answer.citations:
        return text
    sources = "\n".join(f"[{c.number}] [{link_title(c.title)}](<{c.url}>)" for c in answer.citations)
    heading = "**Sources**" if answer.found else "**Closest pages**"
    return f"{text}\n\n{heading}\n{sources}"


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
    for sentence in SENTENCE_END.split(block):
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
    for block in blocks(text):
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


def preview(text: str, limit: int = 1900) -> str:
    """The end of an answer still being written, as one message: escaped, its open code fence closed."""
    if text.count(_FENCE) % 2:
        text += f"\n{_FENCE}"
    return split_message(escape_markdown(text), limit)[-1] + " …"


def clip(text: str, limit: int = LIMIT) -> str:
    """One message however long the text (an error quoting a 6000-character option): cut in the middle,
    so the start and the advice at the end stay."""
    if len(text) <= limit:
        return text
    keep = limit - len(f" … ({len(text)} characters cut) … ")  # (the count is at most this long)
    head, tail = keep // 3, keep - keep // 3
    return f"{text[:head]} … ({len(text) - keep} characters cut) … {text[len(text) - tail :]}"


def shorten(text: str, limit: int = 90) -> str:
    """A thread name: the question on one line, cut at a word."""
    text = " ".join(text.split()) or "Question"
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
