"""Plain text (`text/plain`): one section, its paragraphs (runs of lines between blank lines) kept as written.

A text file's lines are often laid out by hand (tables, lists, wrapped prose), so they are not re-joined.
Its links are not followed: a bare URL in a text file is as often an example as a reference.
"""

from __future__ import annotations

import re

from ragcord.errors import UnreadableFile
from ragcord.knowledge.chunking import Section
from workers.extraction.document import ExtractedPage
from workers.extraction.reading import Budget, ReadLimits, file_title, short_line

_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")


def read_plaintext(text: str, url: str, limits: ReadLimits) -> ExtractedPage:
    """One section of the file's paragraphs; its first line is its title when it is short."""
    budget = Budget(limits)
    lines = [line.rstrip() for line in text.expandtabs(8).split("\n")]
    body = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")
    body = budget.take(body)
    if not body.strip():
        raise UnreadableFile("the text file is empty")
    first = next(line for line in body.split("\n") if line.strip())
    title = short_line(first, 100) or file_title(url)
    return ExtractedPage(
        title=title,
        canonical=None,
        links=[],
        sections=[Section((), "", body)],
        notes=tuple(budget.notes),
    )
