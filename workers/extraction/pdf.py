"""A PDF's text, one section per page ("Page 3", anchor `page=3`: browsers' PDF viewers open that page).

pypdf reads it (pure Python, no external program), under limits tighter than its defaults: decompressed
streams, page tree, per-page XObjects; jbig2dec is never called. Pages are read until `max_pdf_pages`,
the text budget or the time budget runs out, checked between pages; what was read is kept and noted.
Lines are joined into paragraphs again (PDFs break every line) and the running header or footer repeated
on most pages is dropped.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from typing import Any

from pypdf import PdfReader, apply_configuration
from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

from ragcord.errors import UnreadableFile
from ragcord.knowledge.chunking import Section
from workers.extraction.document import ExtractedPage
from workers.extraction.reading import Budget, ReadLimits, absolute_link, file_title, short_line

log = logging.getLogger(__name__)

# pypdf's defaults allow 75 MB per decompressed stream and 300 MB of decoding work per stream: a 20 MB
# PDF of text needs far less, and a bomb is stopped early.
_PYPDF_LIMITS: dict[str, Any] = {
    "zlib_maximum_output_length": 20_000_000,
    "lzw_maximum_output_length": 20_000_000,
    "run_length_maximum_output_length": 20_000_000,
    "array_based_stream_maximum_output_length": 20_000_000,
    "stream_decoding_work_maximum_length": 60_000_000,
    "page_tree_maximum_entries": 50_000,
    "xform_maximum_invocations_per_extraction": 200,
    # Operations parsed per content stream (default 2M): extracting 100k takes ~6 s; a page of dense
    # text has some thousands.
    "stream_parsing_work_maximum_count": 200_000,
    "jbig2dec_binary": None,  # images are never read, and no external program runs on a crawled file
}
_MAGIC = b"%PDF-"
# pypdf raises more than its own errors on a broken file; each means the same: unreadable.
_BROKEN = (PyPdfError, PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError)
_BULLETS = ("•", "◦", "▪", "‣", "∙", "·", "–", "- ", "* ")
_PAGE_NUMBER = re.compile(r"^(?:page\s+)?\d+(?:\s*(?:/|of)\s*\d+)?$|^[ivxlc]+$", re.IGNORECASE)
_NUMBERED_HEADING = re.compile(r"^(?:\d+\.)+\d*\s+[A-Z]")  # `1.2. What is this spec?`
_DIGITS = re.compile(r"\d+")
_FILENAME_TITLE = re.compile(r"\.(?:docx?|odt|tex|dvi|pdf|pptx?|indd|qxd)$|^microsoft word|^untitled", re.I)


def read_pdf(body: bytes, url: str, limits: ReadLimits) -> ExtractedPage:
    """Sections of a PDF's text, one per page; raises ExtractionFailed with the reason a PDF is unreadable."""
    if _MAGIC not in body[:1024]:
        start = body[:16].decode("ascii", "replace").strip() or "nothing"
        raise UnreadableFile(f"served as a PDF but is not one (it starts with {start!r})")
    budget = Budget(limits)
    try:
        with apply_configuration(**_PYPDF_LIMITS):
            return _read(body, url, budget)
    except UnreadableFile:
        raise
    except RecursionError:
        raise UnreadableFile("the PDF's objects are nested too deeply to read") from None
    except FileNotDecryptedError:
        raise UnreadableFile("the PDF is encrypted with a password: it cannot be read") from None
    except _BROKEN as exc:
        raise UnreadableFile(f"the PDF cannot be read: {type(exc).__name__}: {str(exc)[:200]}") from None


def _read(body: bytes, url: str, budget: Budget) -> ExtractedPage:
    reader = PdfReader(io.BytesIO(body), strict=False)
    if reader.is_encrypted:
        try:
            # Many PDFs are encrypted with an empty user password (printing or copying restricted only).
            if not reader.decrypt(""):
                raise FileNotDecryptedError("a password is needed")
        except NotImplementedError as exc:  # an encryption pypdf cannot undo without an extra package
            raise UnreadableFile(f"the PDF is encrypted in a way that cannot be read ({exc})") from None
    total = len(reader.pages)
    if total == 0:
        raise UnreadableFile("the PDF has no pages")
    limit = min(total, budget.limits.max_pdf_pages)
    pages: list[list[str]] = []
    links: dict[str, None] = {}
    failed = 0
    first_error = ""
    for number in range(limit):
        if budget.expired():
            budget.note(f"reading stopped after {budget.limits.max_seconds:g}s, at page {number + 1}")
            break
        try:
            page = reader.pages[number]
            text = page.extract_text() or ""
            for link in _uri_links(page, url):
                links[link] = None
        except (RecursionError, *_BROKEN) as exc:
            log.debug("page %d of %s is unreadable: %r", number + 1, url, exc)
            failed += 1
            first_error = first_error or f"{type(exc).__name__}: {str(exc)[:160]}"
            text = ""
        pages.append([line.strip() for line in text.replace("\r", "\n").split("\n")])
    if limit < total:
        budget.note(f"only the first {limit} of {total} pages are read")
    if failed:
        budget.note(f"{failed} page{'s' if failed > 1 else ''} could not be read ({first_error})")
    title = _title(reader, pages, url)
    repeated = _running_lines(pages)
    sections: list[Section] = []
    for number, lines in enumerate(pages, start=1):
        if budget.spent:
            break
        kept = [line for line in lines if line and _shape(line) not in repeated]
        if not any(not _PAGE_NUMBER.match(line) for line in kept):
            kept = [line for line in lines if line]  # nothing but the repeated lines: they are the page
        while kept and _PAGE_NUMBER.match(kept[-1]):
            kept.pop()
        text = budget.take("\n\n".join(_paragraphs(kept)))
        if text.strip():
            sections.append(Section((f"Page {number}",), f"page={number}", text))
    if not sections and not failed:  # skipped like an HTML page without text, the notes saying why
        read = f"{len(pages)} page{'s' if len(pages) != 1 else ''} read"
        budget.note(f"the PDF has no text ({read}: scanned images or drawings?)")
    return ExtractedPage(
        title=title, canonical=None, links=list(links), sections=sections, notes=tuple(budget.notes)
    )


def _title(reader: PdfReader, pages: list[list[str]], url: str) -> str:
    """The document's own title, unless it is a file name; else the first line of page 1; else the file."""
    try:
        metadata = reader.metadata
        declared = short_line(str(metadata.get("/Title") or "")) if metadata is not None else None
    except _BROKEN:
        declared = None
    if declared and not _FILENAME_TITLE.search(declared):
        return declared
    first = next((line for line in (pages[0] if pages else []) if line), "")
    return short_line(first, 120) or file_title(url)


def _shape(line: str) -> str:
    """A line with its numbers blanked: `Chapter 2 · page 14` and `· page 15` share one shape."""
    return _DIGITS.sub("#", " ".join(line.split()))


def _running_lines(pages: list[list[str]]) -> set[str]:
    """Shapes of the lines that open or close at least half of the pages (3 or more): headers, footers."""
    if len(pages) < 3:
        return set()
    counts: Counter[str] = Counter()
    for lines in pages:
        present = [line for line in lines if line]
        counts.update({_shape(line) for line in present[:2] + present[-2:]})
    return {shape for shape, count in counts.items() if count * 2 >= len(pages)}


def _paragraphs(lines: list[str]) -> list[str]:
    """The page's lines joined into paragraphs: a short line, a bullet or a colon ends one."""
    if not lines:
        return []
    widths = sorted(len(line) for line in lines)
    full = widths[int(len(widths) * 0.9)] if len(widths) >= 5 else max(widths)
    out: list[str] = []
    current = ""
    for line in lines:
        bullet = line.startswith(_BULLETS)
        if bullet:
            line = "- " + line.lstrip("•◦▪‣∙·–-* ").strip()
        if current and (bullet or _NUMBERED_HEADING.match(line)):
            out.append(current)
            current = ""
        if not current:
            current = line
        elif current.endswith("-") and len(current) > 1 and current[-2].isalpha() and line[:1].islower():
            current = current[:-1] + line  # a word hyphenated at the line's end
        else:
            current = f"{current} {line}"
        if len(line) < 0.75 * full or line.endswith(":"):
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def _uri_links(page: Any, base: str) -> list[str]:
    """The page's link annotations that open a web address."""
    found: list[str] = []
    annotations = page.get("/Annots")
    if annotations is None:
        return found
    for annotation in list(annotations.get_object())[:1000]:
        action = annotation.get_object().get("/A")
        uri = action.get_object().get("/URI") if action is not None else None
        if isinstance(uri, (str, bytes)):
            text = uri.decode("latin-1") if isinstance(uri, bytes) else uri
            if (link := absolute_link(base, text)) is not None:
                found.append(link)
    return found
