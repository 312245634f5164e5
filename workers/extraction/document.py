"""What extraction yields for one page: its title, canonical URL, links and sections of clean text."""

from __future__ import annotations

from dataclasses import dataclass

from ragcord.knowledge.chunking import Section


@dataclass(frozen=True)
class ExtractedPage:
    title: str
    canonical: str | None  # <link rel="canonical">, absolute and normalised
    links: list[str]  # absolute, normalised, in document order, unique; from the whole page
    sections: list[Section]
    # What a capped reader left out ("only the first 500 of 1200 pages are read"): said in the page's event.
    notes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The whole content with headings as markdown-style lines: what is hashed to find duplicates."""
        lines: list[str] = []
        previous: tuple[str, ...] = ()
        for section in self.sections:
            path = section.heading_path
            shared = 0
            while shared < min(len(path), len(previous)) and path[shared] == previous[shared]:
                shared += 1
            if shared == len(path) and path != previous:
                shared = len(path) - 1  # a parent section resumed after a child: repeat its heading
            for depth in range(shared, len(path)):
                lines.append(f"{'#' * min(depth + 1, 6)} {path[depth]}")
            lines.append(section.text)
            previous = path
        return "\n\n".join(lines)

    @property
    def markdown(self) -> str:
        """The same text; `chunk_markdown` reads its headings back (for callers without sections)."""
        return self.text
