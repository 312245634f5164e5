"""From a fetched page's bytes to its title, canonical URL, links and sections of clean text."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urljoin

from lxml.html import HtmlElement

from ragcord.errors import ExtractionFailed
from ragcord.knowledge.chunking import Section
from workers.extraction.content import main_content
from workers.extraction.decode import parse_html, sniff_encoding
from workers.extraction.document import ExtractedPage
from workers.extraction.reading import absolute_link
from workers.extraction.render import render_sections
from workers.extraction.webpage import content_text, is_documentation, strip_unreadable

__all__ = ["ExtractedPage", "Section", "extract_html", "parse_html", "sniff_encoding"]

log = logging.getLogger(__name__)

# trafilatura's text this share of the page's words or more means it found no main content of its own.
_ALL_OF_IT = 0.9
# Our walk of the kept blocks under this share of trafilatura's words: it read text we cannot see.
_RENDERED_SHARE = 0.5
# Go's documentation pages name themselves in a leading comment: <!--{ "Title": "The Go ...", ... }-->
_GODOC_TITLE = re.compile(rb'^\s*<!--\{\s*"Title"\s*:\s*"([^"]+)"')


def _base_url(tree: HtmlElement, url: str) -> str:
    base = tree.find(".//base[@href]")
    return urljoin(url, base.get("href").strip()) if base is not None else url


def _links(tree: HtmlElement, base: str) -> list[str]:
    """Every link of the whole page: navigation and tables of contents are how a docs site is reached."""
    links: dict[str, None] = {}
    seen: set[str] = set()
    for anchor in tree.iter("a", "area"):
        href = anchor.get("href") or ""
        if href in seen:
            continue
        seen.add(href)
        if (url := absolute_link(base, href)) is not None:
            links[url] = None
    return list(links)


def _canonical(tree: HtmlElement, base: str) -> str | None:
    for link in tree.iterfind(".//link[@href]"):
        if "canonical" in (link.get("rel") or "").lower().split():
            return absolute_link(base, link.get("href"))
    return None


def _title(tree: HtmlElement, body: bytes) -> str:
    """The page's own <title>, else its h1, else the title Go's doc pages declare in a comment."""
    title = " ".join((tree.findtext("head/title") or tree.findtext(".//title") or "").split())
    if not title and (h1 := tree.find(".//h1")) is not None:
        title = " ".join(h1.text_content().replace("¶", " ").split())
    if not title and (match := _GODOC_TITLE.match(body[:1024])):
        title = " ".join(match.group(1).decode("utf-8", "replace").split())
    return title


def _sections(tree: HtmlElement, body: bytes, url: str) -> list[Section]:
    """A documentation generator's page by its known containers; any other by trafilatura's blocks."""
    if is_documentation(tree, body):
        return render_sections(main_content(tree))
    content = content_text(tree, url)
    if content is None:
        return render_sections(main_content(tree))
    # The whole body is offered: trafilatura's choice of blocks beats our container guess on the open web.
    root = strip_unreadable(tree)
    if content.words >= _ALL_OF_IT * len(root.text_content().split()):
        # trafilatura kept (nearly) the whole page, as it does on short pages: our container guess decides too
        return render_sections(main_content(tree), keep=content.keep)
    sections = render_sections(root, keep=content.keep)
    rendered = sum(len(section.text.split()) for section in sections)
    if rendered < _RENDERED_SHARE * content.words:
        # trafilatura read text our walker does not see (a script template, a JSON payload): take its text
        return [Section((), "", content.text)]
    return sections


def extract_html(body: bytes, url: str, *, charset: str | None = None) -> ExtractedPage:
    """Title, canonical URL, every link and the main content's sections; raises ExtractionFailed."""
    if b"\x00" in body[:8192]:
        raise ExtractionFailed("binary content, not an HTML page")
    started = time.perf_counter()
    encoding = sniff_encoding(body, charset)
    tree = parse_html(body, encoding)
    base = _base_url(tree, url)
    links = _links(tree, base)
    canonical = _canonical(tree, base)
    title = _title(tree, body)
    try:
        sections = _sections(tree, body, url)
        if not any(section.text for section in sections):
            # A contents page (its entries' descriptions are its text): read it again keeping the contents.
            sections = render_sections(main_content(parse_html(body, encoding), keep_toc=True))
    except RecursionError:
        raise ExtractionFailed("the page's elements are nested too deeply to read", links=links) from None
    log.debug(
        "extracted %s (%d bytes, %s) in %.3fs: %d sections",
        url,
        len(body),
        encoding,
        time.perf_counter() - started,
        len(sections),
    )
    return ExtractedPage(title=title or url, canonical=canonical, links=links, sections=sections)
