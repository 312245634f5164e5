"""What the readers of PDF, Markdown, reStructuredText and plain text share: limits, a budget, text, links."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

from ragcord.errors import UnreadableFile
from ragcord.settings import Settings
from ragcord.urls import normalize_url
from workers.extraction.decode import sniff_encoding

_SKIPPED_SCHEMES = ("#", "javascript:", "mailto:", "tel:", "data:")


@dataclass(frozen=True)
class ReadLimits:
    """How much of one file the readers take; the defaults are Settings' (ragcord/settings.py)."""

    max_pdf_pages: int = 500
    max_markup_bytes: int = 1_000_000
    max_text_chars: int = 2_000_000
    max_seconds: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        return cls(
            max_pdf_pages=settings.max_pdf_pages,
            max_markup_bytes=settings.max_markup_bytes,
            max_text_chars=settings.max_text_chars,
            max_seconds=settings.max_extract_seconds,
        )


class Budget:
    """What reading one file may still use (characters of text, seconds), and notes of what was left out."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.chars_left = limits.max_text_chars
        self.deadline = time.monotonic() + limits.max_seconds
        self.notes: list[str] = []

    @property
    def spent(self) -> bool:
        return self.chars_left <= 0

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def take(self, text: str) -> str:
        """`text`, cut where the file's text budget ends (noted once)."""
        if len(text) <= self.chars_left:
            self.chars_left -= len(text)
            return text
        kept = text[: max(0, self.chars_left)]
        self.chars_left = 0
        self.note(f"only the first {self.limits.max_text_chars} characters of text are kept")
        return kept


def decode_text(body: bytes, charset: str | None) -> str:
    """A text file's bytes as text (BOM, HTTP charset, detection), newlines made `\\n`."""
    if not body.strip():
        raise UnreadableFile("empty file: the response has no content")
    if b"\x00" in body[:8192] and not body.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableFile("binary content served as text")
    text = body.decode(sniff_encoding(body, charset), errors="replace").removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def absolute_link(base: str, href: str | None) -> str | None:
    """`href` as an absolute, normalised http(s) URL; None for fragments, mail, scripts and the malformed."""
    href = (href or "").strip()
    if not href or href.startswith(_SKIPPED_SCHEMES):
        return None
    try:
        url = normalize_url(urljoin(base, href))
    except ValueError:
        return None
    return url if urlsplit(url).scheme in ("http", "https") else None


def file_title(url: str) -> str:
    """A title from the URL when the file names none: its file name (`manual.pdf`), else its host."""
    parts = urlsplit(url)
    name = PurePosixPath(unquote(parts.path)).name
    return name or parts.hostname or url


def short_line(text: str, limit: int = 150) -> str | None:
    """`text` whitespace-collapsed when it is one short line that can serve as a title, else None (a list
    item's marker is dropped; a line of punctuation is no title)."""
    line = " ".join(text.split()).removeprefix("- ").strip()
    return line if len(line) <= limit and any(c.isalnum() for c in line) else None


def within_bytes(text: str, limit: int, budget: Budget) -> str:
    """The first `limit` bytes' worth of `text`, cut at a blank line when there is one (noted)."""
    if len(text) * 4 <= limit or len(text.encode("utf-8", "replace")) <= limit:
        return text
    cut = text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")
    paragraph = cut.rfind("\n\n")
    budget.note(f"only the first {limit} bytes are read")
    return cut[:paragraph] if paragraph > len(cut) // 2 else cut
