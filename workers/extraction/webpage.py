"""Pages no documentation generator made: trafilatura decides which blocks are content, our renderer keeps
their structure (sections, anchors, code, lists, tables).

A documentation generator's page is read by `content.main_content` alone (its containers are known and its
structure matters); any other page (a product site, a blog, a news article, a help centre) is the open web,
where navigation, related-article lists, bylines, cookie boxes and footers surround the text. There
trafilatura, the best main-content extractor measured on the open web (bench/extraction.py), reads the page
and each block our renderer produces is kept only when trafilatura kept its text.
"""

from __future__ import annotations

import logging
import re

import trafilatura
from lxml import etree
from lxml.html import HtmlElement

log = logging.getLogger(__name__)

# <meta name="generator"> values of documentation generators (lower case, matched as substrings).
_DOC_GENERATORS = (
    "sphinx",
    "docutils",
    "docbook",
    "doxygen",
    "makeinfo",
    "texinfo",
    "texi2html",
    "gtk-doc",
    "mkdocs",
    "docusaurus",
    "mdbook",
    "javadoc",
    "rustdoc",
    "pdoc",
    "typedoc",
    "jsdoc",
    "antora",
    "vitepress",
    "vuepress",
    "asciidoctor",
    "gitbook",
    "docfx",
    "starlight",
    "nextra",
    "godoc",
    "pkgsite",
)
# Containers and marks only documentation generators write (Sphinx, Doxygen, DocBook/gtk-doc, texinfo,
# Read the Docs, MkDocs Material, Docusaurus, rustdoc, Javadoc, Go's site).
_DOC_MARKS = (
    "//div[contains(concat(' ', normalize-space(@class), ' '), ' sphinxsidebar ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' documentwrapper ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' rst-content ')]"
    " | //a[contains(concat(' ', normalize-space(@class), ' '), ' headerlink ')]"
    " | //div[@id='doc-content'] | //div[contains(concat(' ', normalize-space(@class), ' '), ' navheader ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' titlepage ')]"
    " | //table[contains(concat(' ', normalize-space(@class), ' '), ' navigation ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' md-content ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' theme-doc-markdown ')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' nav-panel ')]"
    " | //div[@id='nav-path'] | //section[@id='main-content' and contains(@class, 'content')]"
    " | //div[contains(concat(' ', normalize-space(@class), ' '), ' contentContainer ')]"
)
# Go's documentation pages declare themselves in a leading comment: <!--{ "Title": ... }-->
_GODOC_HEADER = re.compile(rb'^\s*<!--\{\s*"Title"')

# Pages of more elements are read by our own (linear) extractor alone: twice the largest page of trafilatura's
# evaluation set (10,106 elements; 99% have under 3,200).
MAX_ELEMENTS = 20_000
# trafilatura's time grows with the square of the nesting (4,000 nested divs: 7.5 s); real pages nest < 100.
MAX_DEPTH = 400
# A block of this many words or more is kept when this share of its word trigrams is in trafilatura's text
# (our rendering and trafilatura's differ in list markers, cell separators and line breaks).
_LONG_BLOCK_WORDS = 4
_TRIGRAM_SHARE = 0.5
# A block of few words but this many characters is in a script without spaces between words.
_LONG_BLOCK_CHARS = 25
_PIECE_CHARS = 8
# Never text: code, templates, form controls, the pronunciation over ruby text (trafilatura drops it too).
_UNREADABLE = ("script", "style", "noscript", "template", "svg", "button", "select", "textarea", "rt", "rp")
_MARKER = re.compile(r"^\s*(?:[-*]|\d+\.)\s+")


def is_documentation(tree: HtmlElement, body: bytes) -> bool:
    """Whether a documentation generator made the page (its meta generator tag, or its own containers)."""
    for meta in tree.iterfind(".//meta[@name]"):
        if meta.get("name", "").lower() == "generator":
            content = (meta.get("content") or "").lower()
            if any(name in content for name in _DOC_GENERATORS):
                return True
    if _GODOC_HEADER.match(body[:256]):
        return True
    return bool(tree.xpath(_DOC_MARKS))


def strip_unreadable(tree: HtmlElement) -> HtmlElement:
    """The page's body without what is never read as text (scripts, styles, ruby annotations); in place."""
    root = tree.find("body")
    if root is None:
        root = tree
    for el in list(root.iter(*_UNREADABLE)):
        if el.getparent() is not None:
            el.drop_tree()
    return root


def _words(text: str) -> list[str]:
    return text.replace("`", " ").replace("|", " ").split()


class ContentText:
    """trafilatura's text of a page, indexed to answer "did it keep this block?" in constant time a block
    (a page of 50,000 table rows must not cost 50,000 scans of its text)."""

    def __init__(self, text: str) -> None:
        words = _words(text)
        self.text = text
        self.words = len(words)
        self.trigrams = frozenset(zip(words, words[1:], words[2:], strict=False))
        raw = text.split("\n")  # a line "5. Name" is an item of a list or a numbered heading
        lines = {" ".join(_words(line)) for line in raw}
        lines |= {" ".join(_words(_MARKER.sub("", line))) for line in raw}
        self.lines = frozenset(lines)
        self._compact = "".join(words)
        self._pieces: frozenset[str] | None = None

    @property
    def pieces(self) -> frozenset[str]:
        """Every run of _PIECE_CHARS characters of the text without spaces (built when first needed)."""
        if self._pieces is None:
            compact = self._compact
            self._pieces = frozenset(
                compact[i : i + _PIECE_CHARS] for i in range(len(compact) - _PIECE_CHARS + 1)
            )
        return self._pieces

    def holds(self, text: str) -> bool:
        words = _words(text)
        if not words:
            return False
        if len(words) < _LONG_BLOCK_WORDS and sum(map(len, words)) >= _LONG_BLOCK_CHARS:
            # Chinese, Japanese, Thai: few spaces, so runs of characters stand for word trigrams
            compact = "".join(words)
            pieces = [
                compact[i : i + _PIECE_CHARS] for i in range(0, len(compact) - _PIECE_CHARS + 1, _PIECE_CHARS)
            ]
            return sum(1 for piece in pieces if piece in self.pieces) >= _TRIGRAM_SHARE * len(pieces)
        if len(words) < _LONG_BLOCK_WORDS:
            # a short block (a label, a heading, a link) only as a line of its own: "Kontakt" is a common word
            return " ".join(words) in self.lines
        grams = list(zip(words, words[1:], words[2:], strict=False))
        found = sum(1 for gram in grams if gram in self.trigrams)
        return found >= _TRIGRAM_SHARE * len(grams)

    def keep(self, kind: str, text: str) -> str | None:
        """A block filter for `render_sections`: the block, the lines of it trafilatura kept, or None."""
        if kind in ("list", "table"):
            lines = text.split("\n")
            kept = [line for line in lines if self.holds(_MARKER.sub("", line))]
            if not kept:
                return None
            return text if len(kept) == len(lines) else "\n".join(kept)
        return text if self.holds(text) else None


def _within_limits(tree: HtmlElement) -> bool:
    """At most MAX_ELEMENTS elements nested at most MAX_DEPTH deep (one pass, stops at the first excess)."""
    depth = count = 0
    for event, _ in etree.iterwalk(tree, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue
        depth += 1
        count += 1
        if depth > MAX_DEPTH or count > MAX_ELEMENTS:
            return False
    return True


def content_text(tree: HtmlElement, url: str) -> ContentText | None:
    """trafilatura's main text of the page (it reads a copy of `tree`), or None when it finds none or the
    page is too large for it (its time grows faster than the page: 10,000 table rows took 11 s)."""
    if not _within_limits(tree):
        log.info(
            "%s has over %d elements or %d levels: read without trafilatura", url, MAX_ELEMENTS, MAX_DEPTH
        )
        return None
    try:
        # trafilatura's standard options (its own evaluation's), text only: our renderer keeps the structure
        text = trafilatura.extract(
            tree,
            url=url,
            include_comments=False,
            include_tables=True,
            include_formatting=False,
            with_metadata=False,
            output_format="txt",
        )
    except (ValueError, TypeError, RecursionError) as exc:
        log.debug("trafilatura failed on %s: %s", url, exc)
        return None
    if not text or not text.strip():
        return None
    return ContentText(text)
