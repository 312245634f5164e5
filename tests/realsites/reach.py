"""Which HTML pages of a site on disk a crawl from the seed should reach, computed without the crawler.

A plain breadth-first walk over `<a href>` links read with lxml from the files themselves, so the
coverage check of the real-site tests is not the crawler grading its own homework. The rules mirror
what an operator is promised: same host, path under the seed's directory, include/exclude regular
expressions searched in the path, at most `max_depth` links from the seed.
"""

from __future__ import annotations

import posixpath
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import lxml.html
from lxml import etree

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
_BASE = "http://site.invalid"  # a stand-in origin: only paths matter on disk


@dataclass
class Reach:
    """The outcome of the walk: pages by path with their depth, and every other in-scope link target."""

    pages: dict[str, int] = field(default_factory=dict)  # page_key(path) -> depth
    other_files: set[str] = field(default_factory=set)  # in scope, exist, not HTML (txt, png, ...)
    missing: set[str] = field(default_factory=set)  # in scope, not on disk: the site's own broken links
    too_deep: set[str] = field(default_factory=set)

    @property
    def link_targets(self) -> int:
        """Every distinct in-scope URL a crawler reserves against max_pages."""
        return len(self.pages) + len(self.other_files) + len(self.missing)


def _in_scope(path: str, prefix: str, include: list[re.Pattern[str]], exclude: list[re.Pattern[str]]) -> bool:
    if not (path.startswith(prefix) or path + "/" == prefix):
        return False
    if include and not any(p.search(path) for p in include):
        return False
    return not any(p.search(path) for p in exclude)


def page_key(path: str) -> str:
    """One name per file: `/dir/` and `/dir/index.html` are the same page (servers and crawlers alike)."""
    return path + "index.html" if path.endswith("/") else path


def file_for(root: Path, path: str) -> Path:
    target = root / unquote(path).lstrip("/")
    return target / "index.html" if path.endswith("/") else target


def page_links(data: bytes, page_path: str) -> list[str]:
    """The paths (no fragment, no query) of every same-origin `<a href>` of a page, in document order."""
    try:
        tree = lxml.html.document_fromstring(data)  # bytes: a leading <?xml encoding=...?> is fine
    except (etree.ParserError, ValueError):
        return []
    base = urljoin(_BASE, page_path)
    base_href = tree.find(".//base[@href]")
    if base_href is not None:
        base = urljoin(base, base_href.get("href"))
    out: list[str] = []
    for anchor in tree.iterfind(".//a[@href]"):
        href = (anchor.get("href") or "").strip()
        if not href or href.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
            continue
        url, _ = urldefrag(urljoin(base, href))
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != _BASE:
            continue
        path = parts.path or "/"
        normal = posixpath.normpath(path) + ("/" if path.endswith("/") and path != "/" else "")
        out.append(normal)
    return out


def reach(
    root: Path,
    seed: str,
    *,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    max_depth: int = 100,
) -> Reach:
    """Walk the site under `root` from `seed` (a path such as "/index.html") and return what it reaches."""
    prefix = seed if seed.endswith("/") else seed.rsplit("/", 1)[0] + "/"
    inc = [re.compile(p) for p in include]
    exc = [re.compile(p) for p in exclude]
    result = Reach()
    seen = {page_key(seed)}
    queue: deque[tuple[str, int]] = deque([(page_key(seed), 0)])
    while queue:
        path, depth = queue.popleft()
        file = file_for(root, path)
        if file.is_dir():  # the server redirects /dir to /dir/, a URL of its own
            if page_key(path + "/") not in seen:
                seen.add(page_key(path + "/"))
                queue.append((page_key(path + "/"), depth))
            result.other_files.add(path)
            continue
        if not file.is_file():
            result.missing.add(path)
            continue
        if file.suffix.lower() not in HTML_SUFFIXES:
            result.other_files.add(path)
            continue
        result.pages[path] = depth
        for link in map(page_key, page_links(file.read_bytes(), path)):
            if link in seen or not _in_scope(link, prefix, inc, exc):
                continue
            seen.add(link)
            if depth + 1 > max_depth:
                result.too_deep.add(link)
            else:
                queue.append((link, depth + 1))
    return result


_FRONT_MATTER_TITLE = re.compile(rb'<!--\s*\{[^}]*?"Title"\s*:\s*"([^"]+)"', re.S)
_PERMALINK = "¶\uf0c1#"  # Sphinx's headerlink glyphs, inside the h1


def _squash(text: str) -> str:
    return " ".join(text.split())


def own_titles(data: bytes) -> list[str]:
    """What a page calls itself: its <title>, its first <h1> and, for Go's pages, the front matter's Title."""
    out: list[str] = []
    try:
        tree = lxml.html.document_fromstring(data)
    except (etree.ParserError, ValueError):
        tree = None
    if tree is not None:
        title = tree.find(".//title")
        if title is not None and (text := _squash(title.text_content())):
            out.append(text)
        h1 = tree.find(".//h1")
        if h1 is not None and (text := _squash(h1.text_content()).strip(_PERMALINK + " ")):
            out.append(text)
    match = _FRONT_MATTER_TITLE.search(data[:2000])
    if match:
        out.append(_squash(match.group(1).decode("utf-8", "replace")))
    return out
