"""Which page types ragcord reads, decided in one place: by content type, then by the URL's file suffix.

HTML is extracted by workers.extraction; PDF, Markdown, reStructuredText and plain text by their readers
here. Every reader yields the same ExtractedPage (title, links, sections with anchors), so chunking,
citations and answers do not know which type a page was.
"""

from __future__ import annotations

import enum
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from ragcord.errors import NotHtml, UnreadableFile
from workers.extraction import extract_html
from workers.extraction.document import ExtractedPage
from workers.extraction.markdown import read_markdown
from workers.extraction.pdf import read_pdf
from workers.extraction.plaintext import read_plaintext
from workers.extraction.reading import ReadLimits, decode_text
from workers.extraction.rst import read_rst

__all__ = ["Format", "ReadLimits", "page_format", "read_page"]


class Format(enum.Enum):
    HTML = "HTML"
    PDF = "PDF"
    MARKDOWN = "Markdown"
    RST = "reStructuredText"
    TEXT = "plain text"


_BY_TYPE = {
    "text/html": Format.HTML,
    "application/xhtml+xml": Format.HTML,
    "application/pdf": Format.PDF,
    "application/x-pdf": Format.PDF,
    "text/markdown": Format.MARKDOWN,
    "text/x-markdown": Format.MARKDOWN,
    "text/x-rst": Format.RST,
    "text/prs.fallenstein.rst": Format.RST,
    "text/plain": Format.TEXT,
}
# Served as text/plain (GitHub's raw host, most static servers), these are markup all the same.
_MARKUP_SUFFIXES = {
    ".md": Format.MARKDOWN,
    ".markdown": Format.MARKDOWN,
    ".mdown": Format.MARKDOWN,
    ".rst": Format.RST,
    ".rest": Format.RST,
}
_UNTYPED = ("", "application/octet-stream", "binary/octet-stream", "application/download")
READ = "HTML, PDF, Markdown, reStructuredText and plain text"


def page_format(content_type: str, url: str) -> Format:
    """The format of a response (`content_type` without parameters); NotHtml says why it is not read."""
    content_type = content_type.strip().lower()
    path = unquote(urlsplit(url).path)
    suffix = PurePosixPath(path).suffix.lower()
    found = _BY_TYPE.get(content_type)
    if found is Format.TEXT:
        if "/_sources/" in path:
            # Sphinx's "show source" copy of a page (_sources/x.rst.txt): the page itself is read as HTML.
            raise NotHtml("a Sphinx page's source text: the page itself is read")
        found = _MARKUP_SUFFIXES.get(suffix, Format.TEXT)
    if found is None and content_type in _UNTYPED and suffix == ".pdf":
        found = Format.PDF  # servers that know no PDF type; read_pdf checks it really is one
    if found is None:
        raise NotHtml(f"not a page type ragcord reads ({content_type or 'no content type'}; it reads {READ})")
    return found


def read_page(
    body: bytes, url: str, *, content_type: str, charset: str | None, limits: ReadLimits
) -> ExtractedPage:
    """Title, canonical URL, links and sections of a fetched page of any type ragcord reads.

    Raises ExtractionFailed (the page is not read, with the reason).
    """
    try:
        found = page_format(content_type, url)
    except NotHtml as exc:
        raise UnreadableFile(str(exc)) from None
    if found is Format.HTML:
        return extract_html(body, url, charset=charset)
    if found is Format.PDF:
        return read_pdf(body, url, limits)
    text = decode_text(body, charset)
    if found is Format.MARKDOWN:
        return read_markdown(text, url, limits)
    if found is Format.RST:
        return read_rst(text, url, limits)
    return read_plaintext(text, url, limits)
